"""NiPreps BIDS filter files, --session-label and --output-spaces: parsing, checks, and what pybids finds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smriflow.bids.filters import BIDSFilterError, apply_filters, load_bids_filters
from smriflow.bids.inputs import collect_subjects
from smriflow.bids.spaces import OutputSpaceError, parse_output_spaces

INPUTS = ["t1w", "t2w", "flair", "lesion_mask"]
QUERIES = {
    "t1w": ({"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]}, True),
    "t2w": ({"datatype": "anat", "suffix": "T2w", "extension": [".nii", ".nii.gz"]}, False),
}


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


@pytest.fixture
def dataset(tmp_path) -> Path:
    """sub-01: two acquisitions, a rec- variant and a T2w; sub-02: two sessions of one acquisition."""
    root = tmp_path / "bids"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    for name in ("acq-mprage_T1w", "acq-fast_T1w", "acq-mprage_rec-norm_T1w", "T2w"):
        touch(root / "sub-01" / "anat" / f"sub-01_{name}.nii.gz")
    for ses in ("1", "2"):
        touch(root / "sub-02" / f"ses-{ses}" / "anat" / f"sub-02_ses-{ses}_acq-mprage_T1w.nii.gz")
    return root


def names(subject, session=None) -> dict[str, list[str]]:
    files = subject.units[session]
    return {k: sorted(Path(p).name for p in ([v] if isinstance(v, str) else v)) for k, v in files.items()}


def write(tmp_path: Path, content: object, text: str | None = None) -> Path:
    path = tmp_path / "filter.json"
    path.write_text(text if text is not None else json.dumps(content))
    return path


def test_a_filter_picks_one_acquisition_and_null_means_absent(dataset, tmp_path):
    path = write(tmp_path, {"t1w": {"acquisition": "mprage", "reconstruction": None}})
    queries = apply_filters(QUERIES, load_bids_filters(path, INPUTS))
    sub01, _ = collect_subjects(dataset, queries, many=["t1w"])
    assert names(sub01) == {"t1w": ["sub-01_acq-mprage_T1w.nii.gz"], "t2w": ["sub-01_T2w.nii.gz"]}


def test_without_a_filter_every_variant_is_taken(dataset):
    sub01, _ = collect_subjects(dataset, QUERIES, many=["t1w"])
    assert len(names(sub01)["t1w"]) == 3  # averaged by anat_preproc's t1w_runs: what the filter prevents


def test_lists_and_any(dataset, tmp_path):
    def t1w_runs(content: dict) -> list[str]:
        queries = apply_filters(QUERIES, load_bids_filters(write(tmp_path, content), INPUTS))
        return names(collect_subjects(dataset, queries, many=["t1w"])[0])["t1w"]

    pair = t1w_runs({"t1w": {"acquisition": ["fast", "mprage"], "reconstruction": None}})
    assert pair == ["sub-01_acq-fast_T1w.nii.gz", "sub-01_acq-mprage_T1w.nii.gz"]
    assert t1w_runs({"t1w": {"reconstruction": "*"}}) == ["sub-01_acq-mprage_rec-norm_T1w.nii.gz"]


def test_session_label_takes_those_sessions(dataset):
    queries = apply_filters(QUERIES, None, ["ses-2"])
    sub01, sub02 = collect_subjects(dataset, queries, many=["t1w"])
    assert list(sub02.units) == ["2"]
    assert sub01.problem is not None and "no file matches required input 't1w'" in sub01.problem


@pytest.mark.parametrize(
    ("content", "text", "message"),
    [
        (None, "{not json", "not valid JSON"),
        (["t1w"], None, "expected a JSON object"),
        ({"bold": {"task": "rest"}}, None, "unknown input 'bold'"),
        ({"t1": {"acquisition": "x"}}, None, "unknown input 't1' (did you mean 't1w'?)"),
        ({"t1w": {"acquisiton": "x"}}, None, "unknown entity 'acquisiton' (did you mean 'acquisition'?)"),
        ({"t1w": "mprage"}, None, "'t1w' must map entities to values"),
        ({"t1w": {"run": {"a": 1}}}, None, "'t1w.run' must be a string, a number, null"),
        ({"t1w": {"run": []}}, None, "'t1w.run' must be"),
    ],
)
def test_bad_filter_files_give_one_line_naming_the_file(tmp_path, content, text, message):
    path = write(tmp_path, content, text)
    with pytest.raises(BIDSFilterError) as caught:
        load_bids_filters(path, INPUTS)
    assert str(caught.value).startswith(f"--bids-filter-file {path}: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_filter_file(tmp_path):
    with pytest.raises(BIDSFilterError, match="cannot read it"):
        load_bids_filters(tmp_path / "absent.json", INPUTS)


def test_output_spaces_syntax():
    spaces = parse_output_spaces(["MNI152NLin2009cAsym:res-2", "MNI152NLin6Asym tpl-MNI152NLin2009aSym"])
    assert [(s.template, s.resolution) for s in spaces] == [
        ("MNI152NLin2009cAsym", 2),
        ("MNI152NLin6Asym", None),
        ("MNI152NLin2009aSym", None),
    ]
    for bad, message in [
        ("T1w", "no surfaces"),
        ("fsaverage", "no surfaces"),
        ("MNI152NLin6Asym:den-91k", "unknown modifier 'den-91k'"),
        ("MNI152NLin6Asym:res-0", "res must be a positive integer"),
        ("MNI-152", "alphanumeric"),
        ("MNI152NLin6Asym MNI152NLin6Asym:res-2", "listed twice"),
    ]:
        with pytest.raises(OutputSpaceError, match=message):
            parse_output_spaces([bad])
