"""fMRIPrep finds smriflow's anatomy: smriprep's ``collect_derivatives`` (what ``fmriprep --derivatives``
calls) on the files ``smriflow run anat_preproc`` names.

The names come from :func:`smriflow.engine.naming.derivative_path`, the sink's own path patterns (which
``tests/docs/test_derivative_names.py`` checks against the real sinks); the files are empty, since the
lookup reads names only. The end-to-end run on real data is in ``tests/cli/test_bidsapp.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smriflow.engine.builder import resolve_args
from smriflow.engine.naming import derivative_path, mapped_items, output_entities
from smriflow.engine.registry import packaged_workflows
from smriflow.engine.validate import validate_file

collect_derivatives = pytest.importorskip("smriprep.utils.bids").collect_derivatives

SPACE = "MNI152NLin2009cAsym"  # fMRIPrep's default standard space
FURTHER = "MNI152NLin6Asym"  # a second space (--output-spaces SPACE FURTHER), registered on its own


def write_names(out: Path, label: str, args: dict, session: str | None = None) -> list[str]:
    """Touch every bids: output of anat_preproc under ``out`` as the sinks name it; return the paths."""
    loaded = validate_file(packaged_workflows()["anat_preproc"])
    resolved = resolve_args(loaded, args)
    written = []
    for spec in loaded.spec.outputs.values():
        entities = output_entities(spec, resolved)
        if not entities:
            continue
        items = mapped_items(spec, entities)  # one item per further space: named as its sink names it
        if items == []:
            continue  # no further space: no sink
        named = [derivative_path(item, subject=label, session=session) for item in items or [entities]]
        for path in [p for paths in named for p in ([paths] if isinstance(paths, str) else paths)]:
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).touch()
            written.append(path)
    (out / "dataset_description.json").write_text(
        json.dumps({"Name": "smriflow", "BIDSVersion": "1.8.0", "DatasetType": "derivative"})
    )
    return written


def anat(label: str, stem: str, session: str | None = None) -> str:
    folder = f"sub-{label}/ses-{session}/anat" if session else f"sub-{label}/anat"
    ses = f"_ses-{session}" if session else ""
    return f"{folder}/sub-{label}{ses}_{stem}"


@pytest.fixture
def space_installed(tmp_path, monkeypatch):
    """A TemplateFlow cache where SPACE and FURTHER count as installed (names only: nothing reads them)."""
    for name in (SPACE, FURTHER):
        folder = tmp_path / "templateflow" / f"tpl-{name}"
        folder.mkdir(parents=True)
        (folder / f"tpl-{name}_res-01_desc-brain_T1w.nii.gz").write_bytes(b"\0" * 2048)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow"))


@pytest.mark.parametrize("session", [None, "1"])
def test_collect_derivatives_finds_every_anatomical_derivative(tmp_path, session, space_installed):
    write_names(tmp_path, "01", {"template": SPACE}, session)
    found = collect_derivatives(tmp_path, "01", [SPACE], session_id=session)

    def full(stem: str) -> str:
        return str(tmp_path / anat("01", stem, session))

    assert found["t1w_preproc"] == full("desc-preproc_T1w.nii.gz")
    assert found["t1w_mask"] == full("desc-brain_mask.nii.gz")
    # one tissue dseg: the atlas dsegs (space-T1w_atlas-<atlas>_dseg) must not be taken for it
    assert found["t1w_dseg"] == full("dseg.nii.gz")
    assert found["t1w_tpms"] == [full(f"label-{t}_probseg.nii.gz") for t in ("GM", "WM", "CSF")]
    assert found["transforms"] == {
        SPACE: {
            "forward": full(f"from-T1w_to-{SPACE}_mode-image_xfm.h5"),
            "reverse": full(f"from-{SPACE}_to-T1w_mode-image_xfm.h5"),
        }
    }


@pytest.mark.parametrize("resolution", [None, 2])
def test_every_space_of_several_is_found(tmp_path, space_installed, resolution):
    """``--output-spaces SPACE FURTHER[:res-2]``: both spaces' transforms; the native anatomy once."""
    written = write_names(
        tmp_path, "01", {"template": SPACE, "spaces": [FURTHER], "spaces_res": [resolution]}
    )
    found = collect_derivatives(tmp_path, "01", [SPACE, FURTHER])

    def full(stem: str) -> str:
        return str(tmp_path / anat("01", stem))

    assert found["transforms"] == {
        space: {
            "forward": full(f"from-T1w_to-{space}_mode-image_xfm.h5"),
            "reverse": full(f"from-{space}_to-T1w_mode-image_xfm.h5"),
        }
        for space in (SPACE, FURTHER)
    }
    assert found["t1w_preproc"] == full("desc-preproc_T1w.nii.gz")
    assert found["t1w_mask"] == full("desc-brain_mask.nii.gz")
    assert found["t1w_dseg"] == full("dseg.nii.gz")  # the template-space images carry space-: not taken
    assert found["t1w_tpms"] == [full(f"label-{t}_probseg.nii.gz") for t in ("GM", "WM", "CSF")]
    further = f"space-{FURTHER}" + (f"_res-{resolution}" if resolution else "")
    assert {anat("01", f"{further}_desc-preproc_T1w.nii.gz")} | {
        anat("01", f"{further}_label-{t}_probseg.nii.gz") for t in ("GM", "WM", "CSF")
    } <= set(written)
    # the first space's names are those of a one-space run
    assert set(write_names(tmp_path / "one", "01", {"template": SPACE})) <= set(written)


def test_the_default_template_is_found_under_its_own_name(tmp_path):
    write_names(tmp_path, "01", {})
    found = collect_derivatives(tmp_path, "01", ["MNI152NLin2009aSym", SPACE])
    assert set(found["transforms"]) == {"MNI152NLin2009aSym"}  # not a space smriflow did not register to
    assert found["t1w_dseg"].endswith("sub-01_dseg.nii.gz")


def test_atlas_dsegs_without_a_space_would_be_taken_for_the_tissue_dseg(tmp_path):
    """Why the atlas dsegs carry space-T1w: smriprep's dseg query leaves the atlas entity free."""
    write_names(tmp_path, "01", {})
    old = tmp_path / anat("01", "atlas-aal_dseg.nii.gz")
    old.touch()
    found = collect_derivatives(tmp_path, "01", [])
    assert sorted(found["t1w_dseg"]) == sorted([str(old), str(tmp_path / anat("01", "dseg.nii.gz"))])
