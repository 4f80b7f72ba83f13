"""The BIDS-Apps form ``smriflow BIDS_DIR OUTPUT_DIR participant|group``, filter files, --session-label and
--output-spaces: from the command line, dry runs first, then end to end on a 4 mm copy of the shared T1w."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nb
import numpy as np
import pytest
from _anat_data import T1W, downsample
from _helpers import run_cli

from smriflow.cli.bidsapp import is_bidsapp_call
from smriflow.data.templates import DEFAULT_TEMPLATE, REGISTRATION_FILES, REQUIRED_FILES, get_template

SPACE = "MNI152NLin2009cAsym"
FURTHER = "MNI152NLin6Asym"  # the second space: TemplateFlow has no tissue maps of it


def small_dataset(root: Path, t1w: nb.Nifti1Image, subjects=("01",)) -> Path:
    """Each subject has two acquisitions of the same T1w: acq-mprage and acq-fast (the latter shifted)."""
    bids = root / "bids"
    for label in subjects:
        anat = bids / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        t1w.to_filename(str(anat / f"sub-{label}_acq-mprage_T1w.nii.gz"))
        shifted = nb.Nifti1Image(np.asanyarray(t1w.dataobj) * 0.5, t1w.affine, t1w.header)
        shifted.to_filename(str(anat / f"sub-{label}_acq-fast_T1w.nii.gz"))
    (bids / "dataset_description.json").write_text('{"Name": "bidsapp", "BIDSVersion": "1.8.0"}')
    return bids


def templateflow_cache(home: Path, name: str = SPACE, *, further: bool = False) -> Path:
    """A TemplateFlow cache holding smriflow's own template files under the name ``name`` (the tests are
    about names and layout) and an empty stub of FURTHER, as TemplateFlow's skeleton leaves it; with
    ``further``, FURTHER holds instead what TemplateFlow has of MNI152NLin6Asym: a brain and a mask, no
    tissue maps."""
    copy_template(home / f"tpl-{name}", REQUIRED_FILES)
    if further:
        copy_template(home / f"tpl-{FURTHER}", REGISTRATION_FILES)
    else:
        stub = home / f"tpl-{FURTHER}" / f"tpl-{FURTHER}_res-01_desc-brain_T1w.nii.gz"
        stub.parent.mkdir()
        stub.touch()
    return home


def copy_template(folder: Path, files) -> None:
    """smriflow's own template ``files`` in ``folder`` (``tpl-<name>``), named as TemplateFlow names them."""
    folder.mkdir(parents=True)
    name = folder.name.removeprefix("tpl-")
    for resolution, suffix, desc, label in files:
        source = get_template(DEFAULT_TEMPLATE, resolution=resolution, suffix=suffix, desc=desc, label=label)
        entities = (
            f"res-{resolution:02d}" + (f"_desc-{desc}" if desc else "") + (f"_label-{label}" if label else "")
        )
        shutil.copyfile(source, folder / f"tpl-{name}_{entities}_{suffix}.nii.gz")


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Two subjects with two 8-voxel acq- T1w each: enough for a dry run."""
    t1w = nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    return small_dataset(tmp_path, t1w, ("01", "02"))


def test_the_form_is_told_apart_by_its_first_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()  # a folder named like a command: the command wins
    (tmp_path / "data").mkdir()
    commands = ["run", "validate", "list"]
    assert not is_bidsapp_call(["run", "anat_preproc"], commands)
    assert is_bidsapp_call(["data", "out", "participant"], commands)
    assert is_bidsapp_call(["--debug", "data", "out", "group"], commands)
    assert is_bidsapp_call(["./run", "out", "participant"], commands)
    assert not is_bidsapp_call(["absent"], commands)  # argparse: invalid choice, with the commands
    assert is_bidsapp_call(["absent", "out", "participant"], commands)  # the runner: folder not found
    assert not is_bidsapp_call(["--version"], commands)


def test_dry_run_lists_the_files_taken_with_and_without_a_filter(tiny, tmp_path):
    code, out, err = run_cli(tiny, tmp_path / "out", "participant", "--dry-run")
    assert code == 0, err
    both = "sub-01_acq-fast_T1w.nii.gz, sub-01_acq-mprage_T1w.nii.gz"
    assert f"sub-01 t1w: {both} (2 files combined: t1w_runs=average)" in out
    (tmp_path / "filter.json").write_text(json.dumps({"t1w": {"acquisition": "mprage"}}))
    code, out, err = run_cli(
        tiny,
        tmp_path / "out",
        "participant",
        "--participant-label",
        "02",
        "--bids-filter-file",
        tmp_path / "filter.json",
        "--dry-run",
    )
    assert code == 0, err
    assert "Inputs taken:\n  sub-02 t1w: sub-02_acq-mprage_T1w.nii.gz\ndry run" in out
    assert "sub-01" not in out and "acq-fast" not in out


def test_sessions_are_listed_apart_and_session_label_selects(tmp_path):
    """Each session is processed on its own: its files are not said to be combined across sessions."""
    bids = tmp_path / "bids"
    img = nb.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    for ses in ("1", "2"):
        (bids / "sub-01" / f"ses-{ses}" / "anat").mkdir(parents=True)
        img.to_filename(str(bids / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.nii.gz"))
    (bids / "dataset_description.json").write_text('{"Name": "s", "BIDSVersion": "1.8.0"}')
    code, out, err = run_cli(bids, tmp_path / "out", "participant", "--dry-run")
    assert code == 0, err
    assert "  sub-01 ses-1 t1w: sub-01_ses-1_T1w.nii.gz\n  sub-01 ses-2 t1w: sub-01_ses-2_T1w.nii.gz\n" in out
    code, out, err = run_cli(bids, tmp_path / "out", "participant", "--session-label", "ses-2", "--dry-run")
    assert code == 0, err
    assert "Inputs taken:\n  sub-01 ses-2 t1w: sub-01_ses-2_T1w.nii.gz\ndry run" in out


def test_the_run_command_takes_the_same_options(tiny, tmp_path):
    (tmp_path / "filter.json").write_text(json.dumps({"t1w": {"acquisition": "fast"}}))
    code, out, err = run_cli(
        "run", "anat_preproc", "--bids-dir", tiny, "--output-dir", tmp_path / "out",
        "--bids-filter-file", tmp_path / "filter.json", "--set", "t1w_runs=first", "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    assert "sub-01 t1w: sub-01_acq-fast_T1w.nii.gz\n" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2", "not valid JSON"),
        ('{"bold": {"task": "rest"}}', "unknown input 'bold'"),
        ('{"t1w": {"acq": "mprage"}}', "unknown entity 'acq'"),
    ],
)
def test_a_bad_filter_file_is_one_line_naming_it_exit_2(tiny, tmp_path, content, message):
    path = tmp_path / "filter.json"
    path.write_text(content)
    code, out, err = run_cli(tiny, tmp_path / "out", "participant", "--bids-filter-file", path)
    assert code == 2
    assert err.startswith(f"--bids-filter-file {path}: ") and message in err
    assert err.count("\n") == 1


def test_a_missing_dataset_is_named(tmp_path):
    code, _, err = run_cli(tmp_path / "absent", tmp_path / "out", "participant")
    assert code == 2 and err == f"BIDS dataset folder not found: {tmp_path / 'absent'}\n"


def test_group_level_refuses_participant_options(tiny, tmp_path):
    code, _, err = run_cli(tiny, tmp_path / "out", "group", "--participant-label", "01")
    assert code == 2 and "--participant-label does not apply" in err
    code, _, err = run_cli(tiny, tmp_path / "out", "group", "--session-label", "1")
    assert code == 2 and "--session-label does not apply" in err
    code, _, err = run_cli(tiny, tmp_path / "out", "group", "--output-spaces", SPACE)
    assert code == 2 and "--output-spaces does not apply to the group level" in err


def test_output_spaces_missing_template_names_the_fetch_command(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(templateflow_cache(tmp_path / "tf")))
    code, _, err = run_cli(tiny, tmp_path / "out", "participant", "--output-spaces", "MNI152NLin6Asym:res-2")
    assert code == 2 and err.count("\n") == 1
    # the 0-byte stub counts as missing
    assert "tpl-MNI152NLin6Asym_res-01_desc-brain_T1w.nii.gz is not in the local TemplateFlow cache" in err
    fetch = "get('MNI152NLin6Asym', resolution=1, desc='brain', suffix='T1w')"
    assert f'`python -c "from templateflow.api import get; {fetch}"`' in err
    code, _, err = run_cli(
        tiny, tmp_path / "out", "participant", "--output-spaces", f"{SPACE}:res-2", "--dry-run"
    )
    assert code == 0, err
    code, _, err = run_cli(tiny, tmp_path / "out", "participant", "--output-spaces", f"{SPACE}:res-1")
    assert code == 2 and "give :res-2" in err
    code, _, err = run_cli(
        tiny, tmp_path / "out", "participant", "--output-spaces", SPACE, "--set", "template=X"
    )
    assert code == 2 and "disagree" in err


def test_output_spaces_several_each_checked_and_none_twice(tiny, tmp_path, monkeypatch):
    home = tmp_path / "tf"
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(templateflow_cache(home)))
    code, _, err = run_cli(
        tiny, tmp_path / "out", "participant", "--output-spaces", f"{SPACE}:res-2", FURTHER
    )
    fetch = f"get('{FURTHER}', resolution=1, desc='brain', suffix='T1w')"
    assert code == 2 and err == (
        f"--output-spaces {FURTHER}: template {FURTHER}: tpl-{FURTHER}_res-01_desc-brain_T1w.nii.gz is not "
        f"in the local TemplateFlow cache {home} (empty stubs count as missing); pre-fetch it with "
        f'`python -c "from templateflow.api import get; {fetch}"` (and the other files smriflow reads: '
        "docs/fmriprep.md), or set TEMPLATEFLOW_HOME to a cache that holds them\n"
    )
    code, _, err = run_cli(
        tiny, tmp_path / "out", "participant", "--output-spaces", SPACE, f"{FURTHER}:res-2", f"{FURTHER}"
    )
    assert (code, err) == (2, f"--output-spaces {FURTHER}: the template is listed twice\n")
    code, _, err = run_cli(tiny, tmp_path / "out", "participant", "--output-spaces", SPACE, f"{SPACE}:res-2")
    assert (code, err) == (2, f"--output-spaces {SPACE}:res-2: the template is listed twice\n")
    # a further space is only registered to: its brain and mask suffice (MNI152NLin6Asym has no tissue maps)
    shutil.rmtree(home)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(templateflow_cache(home, further=True)))
    code, _, err = run_cli(
        tiny, tmp_path / "out", "participant", "--output-spaces", SPACE, FURTHER, "--dry-run"
    )
    assert code == 0, err
    # ... but the run's own template needs the tissue maps (QC, VBM)
    code, _, err = run_cli(tiny, tmp_path / "out", "participant", "--output-spaces", FURTHER, SPACE)
    assert code == 2 and f"tpl-{FURTHER}_res-01_label-GM_probseg.nii.gz is not in" in err, err


# -- end to end ---------------------------------------------------------------------------------------------


def smriflow(*argv: object, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``smriflow ARGV`` in a fresh process, as a BIDS-Apps platform calls it."""
    cmd = [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())"]
    return subprocess.run(
        [*cmd, *map(str, argv)], capture_output=True, text=True, env={**os.environ, **env}, timeout=3000
    )


@pytest.fixture(scope="module")
def bidsapp_runs(shared_data, tmp_path_factory):
    """participant (filter picks acq-mprage; --output-spaces two test TemplateFlow templates), then group."""
    root = tmp_path_factory.mktemp("bidsapp_e2e")
    bids = small_dataset(root, downsample(nb.load(shared_data / T1W), 4))
    (root / "filter.json").write_text(json.dumps({"t1w": {"acquisition": "mprage", "reconstruction": None}}))
    env = {
        "TEMPLATEFLOW_HOME": str(templateflow_cache(root / "templateflow", further=True)),
        "TEMPLATEFLOW_AUTOUPDATE": "0",
        "PYTHONHASHSEED": "0",
    }
    out, work = root / "out", root / "work"
    options = ["--work-dir", work, "--nprocs", "2"]
    participant = smriflow(
        bids, out, "participant", "--participant-label", "01", "--bids-filter-file", root / "filter.json",
        "--output-spaces", f"{SPACE}:res-2", FURTHER, *options, env=env,
    )  # fmt: skip
    group = smriflow(bids, out, "group", *options, env=env)
    return SimpleNamespace(root=root, out=out, participant=participant, group=group, env=env)


def end_to_end(test):
    for mark in (pytest.mark.slow, pytest.mark.ants, pytest.mark.shared, pytest.mark.xdist_group("bidsapp")):
        test = mark(test)
    return test


@end_to_end
def test_participant_level_takes_the_filtered_file_and_says_so(bidsapp_runs):
    run = bidsapp_runs.participant
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Inputs taken:\n  sub-01 t1w: sub-01_acq-mprage_T1w.nii.gz\n" in run.stdout
    anat = bidsapp_runs.out / "sub-01" / "anat"
    record = json.loads((anat / "sub-01_acq-mprage_desc-preproc_T1w.json").read_text())
    assert record["Sources"] == ["bids:raw:sub-01/anat/sub-01_acq-mprage_T1w.nii.gz"]
    assert record["GeneratedBy"][0]["Args"]["template"] == SPACE
    assert not list(anat.glob("*acq-fast*"))


@end_to_end
def test_fmriprep_finds_the_anatomy_of_a_real_run(bidsapp_runs):
    collect = pytest.importorskip("smriprep.utils.bids").collect_derivatives
    assert bidsapp_runs.participant.returncode == 0
    found = collect(bidsapp_runs.out, "01", [SPACE, FURTHER])
    anat = bidsapp_runs.out / "sub-01" / "anat"
    stem = str(anat / "sub-01_acq-mprage_")
    assert found["t1w_preproc"] == stem + "desc-preproc_T1w.nii.gz"
    assert found["t1w_mask"] == stem + "desc-brain_mask.nii.gz"
    assert found["t1w_dseg"] == stem + "dseg.nii.gz"
    assert found["t1w_tpms"] == [stem + f"label-{t}_probseg.nii.gz" for t in ("GM", "WM", "CSF")]
    assert found["transforms"] == {
        space: {
            "forward": stem + f"from-T1w_to-{space}_mode-image_xfm.h5",
            "reverse": stem + f"from-{space}_to-T1w_mode-image_xfm.h5",
        }
        for space in (SPACE, FURTHER)
    }
    mask = nb.load(found["t1w_mask"])
    assert mask.shape == nb.load(found["t1w_preproc"]).shape and np.asanyarray(mask.dataobj).any()


@end_to_end
def test_the_further_space_has_its_own_registration_and_files(bidsapp_runs):
    """The second space writes what the first writes of the T1w, tissue maps and transforms (VBM, atlases
    and QC stay with the first), named by its own space; here both names are one image (a test cache)."""
    assert bidsapp_runs.participant.returncode == 0
    anat = bidsapp_runs.out / "sub-01" / "anat"
    names = {p.name.removeprefix("sub-01_acq-mprage_") for p in anat.iterdir()}
    further = {n for n in names if FURTHER in n and not n.endswith(".json")}
    assert further == {
        f"space-{FURTHER}_desc-preproc_T1w.nii.gz",
        *(f"space-{FURTHER}_label-{t}_probseg.nii.gz" for t in ("GM", "WM", "CSF")),
        f"from-T1w_to-{FURTHER}_mode-image_xfm.h5",
        f"from-{FURTHER}_to-T1w_mode-image_xfm.h5",
    }
    assert all(n.replace(".nii.gz", ".json").replace(".h5", ".json") in names for n in further)
    first = {n.replace(SPACE, FURTHER) for n in names if SPACE in n}
    assert further < first  # the modulated GM and log-Jacobian (VBM) are the first space's only
    record = json.loads((anat / f"sub-01_acq-mprage_space-{FURTHER}_desc-preproc_T1w.json").read_text())
    assert record["GeneratedBy"][0]["Node"] == "anat_preproc_wf.register_spaces.out_file"
    one, two = (
        nb.load(anat / f"sub-01_acq-mprage_space-{s}_desc-preproc_T1w.nii.gz") for s in (SPACE, FURTHER)
    )
    assert one.shape == two.shape and np.allclose(one.affine, two.affine)
    # its own registration (moments + affine + SyN) to the same image lands where the first one does
    a, b = (np.asanyarray(img.dataobj).ravel() for img in (one, two))
    assert not np.array_equal(a, b) and np.corrcoef(a, b)[0, 1] > 0.95
    maps = [anat / f"sub-01_acq-mprage_space-{FURTHER}_label-{t}_probseg.nii.gz" for t in ("GM", "WM", "CSF")]
    tpms = [np.asanyarray(nb.load(path).dataobj) for path in maps]
    assert all(t.shape == two.shape for t in tpms) and np.all(sum(tpms) <= 1 + 1e-4)


@end_to_end
def test_group_level_runs_the_group_qc(bidsapp_runs):
    run = bidsapp_runs.group
    assert run.returncode == 0, run.stdout + run.stderr
    assert "qc_group_wf: group run done" in run.stdout
    table = (bidsapp_runs.out / "group_desc-iqms_T1w.tsv").read_text().splitlines()
    assert len(table) == 2 and table[1].split("\t")[0] in ("01", "sub-01")
