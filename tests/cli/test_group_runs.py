"""Group-level workflows (``level: group``) and ``path:`` outputs, through ``smriflow run``."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _helpers import run_cli
from test_run import make_bids

from smriflow.bids.publish import OutputPathError, publish_outputs
from smriflow.config.errors import SpecError
from smriflow.engine.derivatives import provenance_args
from smriflow.engine.prepare import prepare_run
from smriflow.engine.validate import validate_file

GROUP_YAML = """\
smriflow: 1
name: smooth_group_wf
level: group
doc: The study image was smoothed.
args:
  image: {type: path, required: true, doc: the image}
  fwhm: {type: float, default: 4.0}
outputs:
  smoothed:
    from: smooth.out_file
    path: group/smoothed.nii.gz
  figures:
    from: smooth.out_file
    path: group/figures/
  stats:
    from: stats.out_stats
    path: $stats_path
nodes:
  smooth:
    interface: SmoothImage
    params: {in_file: $image, fwhm: $fwhm}
  stats:
    interface: MaskedStatistics
    params: {in_file: $image}
    in: {in_mask: threshold.out_mask}
  threshold:
    interface: ThresholdMask
    in: {in_file: smooth.out_file}
"""


def write_group_yaml(folder: Path, text: str = GROUP_YAML, name: str = "smooth_group") -> Path:
    path = folder / f"{name}.yml"
    path.write_text(text.replace("$stats_path", "group/stats.json"))
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).normal(100, 10, (12, 12, 12)).astype("float32")
    path = tmp_path / "image.nii.gz"
    nib.Nifti1Image(data, np.diag([2.0, 2, 2, 1])).to_filename(path)
    return path


def test_group_run_writes_its_path_outputs_and_no_dataset_description(tmp_path, image):
    spec = write_group_yaml(tmp_path)
    output = tmp_path / "deriv"
    code, out, err = run_cli("run", spec, "--output-dir", output, "--set", f"image={image}")
    assert (code, err) == (0, "")
    assert out.startswith("smriflow run: smooth_group_wf on the group [MultiProc], 7 nodes; work dir ")
    assert "smooth_group_wf: group run done" in out
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert [p for p in written if not p.startswith("logs/")] == [
        "group/figures/image_smooth.nii.gz",
        "group/smoothed.nii.gz",
        "group/stats.json",
    ]
    assert not (output / "dataset_description.json").exists()
    smoothed = nib.load(output / "group" / "smoothed.nii.gz").get_fdata()
    assert smoothed.std() < nib.load(image).get_fdata().std()  # smoothing lowered the noise
    assert not list(output.rglob(".*"))  # no temporary file left behind


def test_group_run_failure_writes_nothing(tmp_path):
    spec = write_group_yaml(tmp_path)
    not_an_image = tmp_path / "broken.nii.gz"
    not_an_image.write_bytes(b"not an image")
    output = tmp_path / "deriv"
    code, out, _ = run_cli("run", spec, "--output-dir", output, "--set", f"image={not_an_image}")
    assert code == 1
    assert "smooth_group_wf: group run failed" in out
    assert "group: node group_wf.smooth_group_wf.smooth failed" in out
    assert not (output / "group").exists()


def test_group_run_refuses_run_folders_in_set_and_participant_labels(tmp_path, image):
    spec = write_group_yaml(tmp_path)
    out_dir = tmp_path / "deriv"
    code, _, err = run_cli("run", spec, "--output-dir", out_dir, "--set", "output_dir=/elsewhere")
    assert (code, err) == (2, "--set output_dir: it is set by --output-dir; give that option instead\n")
    code, _, err = run_cli("run", spec, "--output-dir", out_dir)
    assert (code, err) == (
        2,
        f"{spec}: args.image: 'image' is required by workflow 'smooth_group_wf' and was not given; "
        "set it with --set image=VALUE.\n",
    )
    code, _, err = run_cli(
        "run", spec, "--output-dir", out_dir, "--set", f"image={image}", "--participant-label", "01"
    )
    assert code == 2
    assert err == (
        "'smooth_group_wf' is a group workflow (one run for the whole study): "
        "--participant-label does not apply\n"
    )


def test_group_workflow_gets_the_run_folders_as_builtin_args(tmp_path, image):
    spec = write_group_yaml(tmp_path)
    (tmp_path / "bids").mkdir()
    prepared = prepare_run(
        spec, tmp_path / "bids", tmp_path / "deriv", args={"image": str(image)}, arg_source="--set"
    )
    assert prepared.args["output_dir"] == str(tmp_path / "deriv")
    assert prepared.args["bids_dir"] == str(tmp_path / "bids")
    without = prepare_run(spec, None, tmp_path / "deriv2", args={"image": str(image)})
    assert without.args["bids_dir"] == ""
    assert [s.label for s in without.subjects] == ["group"]
    # the run's folders are execution details, not provenance
    assert "output_dir" not in provenance_args(prepared.args)


def test_participant_workflow_needs_bids_dir(tmp_path):
    code, _, err = run_cli("run", "example", "--output-dir", tmp_path / "deriv")
    assert (code, err) == (2, "workflow 'example_wf' runs per subject: give the BIDS dataset (--bids-dir)\n")


def test_participant_path_output_per_subject(tmp_path):
    example = Path(__file__).parents[2] / "workflows" / "example.yml"
    text = example.read_text().replace(
        "    bids: {desc: masked, suffix: stats, extension: .json}",
        "    path: sub-{subject}/stats/sub-{subject}_stats.json",
    )
    spec = tmp_path / "example_path.yml"
    spec.write_text(text.replace("name: example_wf", "name: example_path_wf"))
    (tmp_path / "example_masking.yml").write_text((example.parent / "example_masking.yml").read_text())
    bids = make_bids(tmp_path / "bids", labels=("01", "02"))
    output = tmp_path / "deriv"
    code, out, err = run_cli("run", spec, "--bids-dir", bids, "--output-dir", output)
    assert (code, err) == (0, ""), out
    for label in ("01", "02"):
        assert (output / f"sub-{label}" / "stats" / f"sub-{label}_stats.json").is_file()
        assert not (output / f"sub-{label}" / "stats" / f"sub-{label}_stats.json.json").exists()


def test_participant_path_needs_session_placeholder_with_sessions(tmp_path):
    example = Path(__file__).parents[2] / "workflows" / "example.yml"
    text = example.read_text().replace(
        "    bids: {desc: masked, suffix: stats, extension: .json}", "    path: sub-{subject}_stats.json"
    )
    spec = tmp_path / "example_path.yml"
    spec.write_text(text.replace("name: example_wf", "name: example_path_wf"))
    (tmp_path / "example_masking.yml").write_text((example.parent / "example_masking.yml").read_text())
    bids = make_bids(tmp_path / "bids", labels=("01",), sessions=("01",))
    code, _, err = run_cli("run", spec, "--bids-dir", bids, "--output-dir", tmp_path / "deriv")
    assert code == 2
    assert err == (
        "sub-01 has 2 sessions but output 't1w_stats' is written to 'sub-{subject}_stats.json', "
        "which has no {session}: add it to the path\n"
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/abs/file.tsv",
            "outputs.smoothed.path: must be a path relative to the output folder; got '/abs/file.tsv'",
        ),
        ("../up.tsv", "outputs.smoothed.path: must stay inside the output folder ('..' is not allowed)"),
        ("sub-{subject}.tsv", "outputs.smoothed.path: a group workflow's path cannot hold {subject}"),
    ],
)
def test_bad_output_paths_are_spec_errors(tmp_path, path, message):
    spec = write_group_yaml(tmp_path, GROUP_YAML.replace("path: group/smoothed.nii.gz", f"path: {path}"))
    with pytest.raises(SpecError) as info:
        validate_file(spec)
    assert message in str(info.value)


def test_bids_and_path_are_exclusive(tmp_path):
    text = GROUP_YAML.replace("path: group/smoothed.nii.gz", "path: a.nii.gz\n    bids: {suffix: T1w}")
    with pytest.raises(SpecError, match="outputs.smoothed: give 'bids' or 'path', not both"):
        validate_file(write_group_yaml(tmp_path, text))


def test_participant_workflow_needs_inputs(tmp_path):
    text = GROUP_YAML.replace("level: group\n", "")
    with pytest.raises(
        SpecError, match="a participant-level workflow needs at least one entry under 'inputs'"
    ):
        validate_file(write_group_yaml(tmp_path, text))


# -- the publishing function ---------------------------------------------------------------------------------
def test_publish_file_list_and_directory(tmp_path):
    source = tmp_path / "src"
    (source / "figs").mkdir(parents=True)
    for name in ("a.svg", "b.svg"):
        (source / "figs" / name).write_text(name)
    (source / "table.tsv").write_text("x\n1\n")
    out = tmp_path / "out"
    assert publish_outputs(source / "table.tsv", out, "t/table.tsv") == [out / "t" / "table.tsv"]
    assert publish_outputs([source / "figs" / "a.svg", source / "figs" / "b.svg"], out, "list/") == [
        out / "list" / "a.svg",
        out / "list" / "b.svg",
    ]
    assert publish_outputs(source / "figs", out, "into/") == [out / "into" / "a.svg", out / "into" / "b.svg"]
    assert publish_outputs(source / "figs", out, "whole") == [out / "whole"]
    (source / "figs" / "b.svg").unlink()
    publish_outputs(source / "figs", out, "whole")  # replaced, not merged
    assert sorted(p.name for p in (out / "whole").iterdir()) == ["a.svg"]
    assert (out / "t" / "table.tsv").read_text() == "x\n1\n"
    assert not [p for p in out.rglob(".*")]


def test_publish_refuses_to_leave_the_output_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, out / "link")
    source = tmp_path / "f.txt"
    source.write_text("x")
    with pytest.raises(OutputPathError, match="leads outside .* \\(through a symbolic link\\)"):
        publish_outputs(source, out, "link/f.txt")
    with pytest.raises(OutputPathError, match="must be relative and stay inside"):
        publish_outputs(source, out, "../f.txt")
    with pytest.raises(OutputPathError, match="names one file but the output holds 2"):
        publish_outputs([source, source], out, "two.txt")
    assert not list(outside.iterdir())


def test_relative_path_args_are_made_absolute(tmp_path, image, monkeypatch):
    spec = write_group_yaml(tmp_path)
    monkeypatch.chdir(image.parent)
    prepared = prepare_run(spec, None, tmp_path / "deriv", args={"image": image.name})
    assert prepared.args["image"] == str(image)


def test_published_files_are_readable_like_other_files(tmp_path):
    source = tmp_path / "f.txt"
    source.write_text("x")
    (tmp_path / "d").mkdir()
    (written,) = publish_outputs(source, tmp_path / "out", "f.txt")
    (folder,) = publish_outputs(tmp_path / "d", tmp_path / "out", "d")
    mask = os.umask(0)
    os.umask(mask)
    assert written.stat().st_mode & 0o777 == 0o666 & ~mask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask
