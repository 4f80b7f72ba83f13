"""The ``qc`` and ``qc_group`` workflows: graphs, and issue 4's "done when" on the shared T1w.

* Graph tests: ``qc`` builds alone with its ports and is fed by anat_preproc's stages; ``qc_group`` is a
  group workflow whose table node reads the ``--output-dir``.
* End to end (``slow``): ``smriflow run anat_preproc`` on four 3 mm copies of the shared sub-0002 T1w
  (block averages taken at different voxel offsets: the clean image and three equally good ones), then
  two deliberately broken variants made from their derivatives: a brain mask eroded by 9 mm, and a strong
  bias field left uncorrected in the N4 image. ``smriflow run qc_group`` must flag both, each with the right
  reason, and none of the good ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import _anat_data
import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

import smriflow
from smriflow.qc.iqms import compute_iqms, write_iqms

QC_INPUTS = ["t1w", "t1w_preproc", "t1w_biasfield", "t1w_mask", "t1w_dseg", "t1w_tpms", "std_t1w", "std_tpms"]
QC_INPUTS += ["thickness_record"]  # CorticalThickness's record: its four thickness IQMs
TEMPLATE = "MNI152NLin2009aSym"


def edges(wf) -> set[tuple[str, str, str, str]]:
    graph = wf._create_flat_graph()
    return {
        (u.fullname, s, v.fullname, d) for u, v, data in graph.edges(data=True) for s, d in data["connect"]
    }


# -- graphs --------------------------------------------------------------------------------------------------
def test_qc_builds_with_its_ports(templateflow_home):
    wf = smriflow.load_workflow("qc", template="MNI152NLin6Asym")
    assert sorted(wf.get_node("inputnode").inputs.copyable_trait_names()) == sorted(QC_INPUTS)
    assert wf.get_node("outputnode").inputs.copyable_trait_names() == ["iqms"]
    assert wf.get_node("measures").inputs.template == "MNI152NLin6Asym"
    assert wf.get_node("template_iqms").inputs.template == "MNI152NLin6Asym"
    # the native metrics do not wait for the registration: its images reach only the node that adds them
    fed = {(dst.split(".")[-1], port) for _, out, dst, port in edges(wf) if out in ("std_t1w", "std_tpms")}
    assert fed == {("template_iqms", "std_t1w"), ("template_iqms", "std_tpms")}


def test_anat_preproc_feeds_qc_from_its_stages():
    wf = smriflow.load_workflow("anat_preproc", template=TEMPLATE)
    fed = {
        port: f"{src.split('.', 1)[1]}.{out}"
        for src, out, dst, port in edges(wf)
        if dst.endswith(".qc_wf.inputnode")
    }
    assert fed == {
        "t1w": "conform.out_file",
        "t1w_preproc": "n4.out_file",
        "t1w_biasfield": "n4.out_bias",
        "t1w_mask": "brain_extraction_wf.outputnode.t1w_mask",
        "t1w_dseg": "tissue_segmentation_wf.outputnode.t1w_dseg",
        "t1w_tpms": "tissue_segmentation_wf.outputnode.t1w_tpms",
        "std_t1w": "spatial_normalization_wf.outputnode.std_t1w",
        "std_tpms": "spatial_normalization_wf.outputnode.std_tpms",
        "thickness_record": "cortical_thickness_wf.outputnode.record",
    }
    assert wf.get_node("qc_wf.measures").inputs.template == TEMPLATE


def test_qc_group_is_a_group_workflow_reading_the_output_dir(tmp_path):
    wf = smriflow.load_workflow("qc_group", output_dir=str(tmp_path), z_threshold=5.0)
    table = wf.get_node("table")
    assert table.inputs.derivatives_dir == str(tmp_path) and table.inputs.z_threshold == 5.0
    assert "group_iqms" in wf.get_node("outputnode").inputs.copyable_trait_names()


# -- issue 4, done when --------------------------------------------------------------------------------------
OFFSETS = {"clean": (0, 0, 0), "shifta": (1, 1, 1), "shiftb": (2, 2, 2), "shiftc": (1, 2, 0)}


def smriflow_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from smriflow.cli.main import main; sys.exit(main())", *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)


def derivatives_of(out: Path, label: str, raw: str) -> dict:
    """The ComputeIQMs inputs of one subject, read back from the derivatives folder."""
    anat = out / f"sub-{label}" / "anat"

    def name(stem: str) -> str:
        return str(anat / f"sub-{label}_{stem}.nii.gz")

    space = f"space-{TEMPLATE}"
    return {
        "t1w": raw,
        "t1w_preproc": name("desc-preproc_T1w"),
        "bias": name("desc-biasfield_T1w"),
        "mask": name("desc-brain_mask"),
        "dseg": name("dseg"),
        "tpms": [name(f"label-{t}_probseg") for t in ("GM", "WM", "CSF")],
        "std_t1w": name(f"{space}_desc-preproc_T1w"),
        "std_tpms": [name(f"{space}_label-{t}_probseg") for t in ("GM", "WM", "CSF")],
    }


def conformed(path: Path, cwd: Path) -> str:
    from smriflow.interfaces.conform import ConformImage

    cwd.mkdir(parents=True, exist_ok=True)
    return ConformImage(in_file=str(path)).run(cwd=str(cwd)).outputs.out_file


def with_bias(path: str, out: Path, strength: float = 0.4) -> str:
    """``path`` times exp(strength * (x + z) / 80 mm): about x0.4 to x2.7 across the head."""
    img = nb.load(path)
    ijk = np.indices(img.shape[:3], dtype=np.float64)
    xyz = np.tensordot(img.affine[:3, :3], ijk, 1) + img.affine[:3, 3, None, None, None]
    field = np.exp(strength * (xyz[0] + xyz[2]) / 80.0)
    nb.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32) * field, img.affine).to_filename(str(out))
    return str(out)


def add_broken(out: Path, label: str, iqms: dict) -> None:
    anat = out / f"sub-{label}" / "anat"
    anat.mkdir(parents=True)
    write_iqms(iqms, anat / f"sub-{label}_desc-iqms_T1w.json")


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("qc_cohort")
    source = nb.load(shared_data / _anat_data.T1W)
    raws = {}
    for label, (a, b, c) in OFFSETS.items():
        anat = root / "bids" / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        path = anat / f"sub-{label}_T1w.nii.gz"
        _anat_data.downsample(source.slicer[a:, b:, c:]).to_filename(str(path))
        raws[label] = conformed(path, root / "conform" / label)
    (root / "bids" / "dataset_description.json").write_text('{"Name": "qc", "BIDSVersion": "1.10.0"}')
    out = root / "out"
    run = smriflow_cli(
        "run", "anat_preproc", "--bids-dir", str(root / "bids"), "--output-dir", str(out),
        "--work-dir", str(root / "work"), "--nprocs", "2",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    # broken variants, each from another good image than the clean one
    inputs = derivatives_of(out, "shifta", raws["shifta"])
    mask = nb.load(inputs["mask"])
    eroded = ndimage.binary_erosion(np.asarray(mask.dataobj) > 0, iterations=3)  # 3 voxels = 9 mm
    nb.Nifti1Image(eroded.astype(np.uint8), mask.affine).to_filename(str(root / "eroded.nii.gz"))
    add_broken(out, "erodedmask", compute_iqms(**{**inputs, "mask": str(root / "eroded.nii.gz")}))
    inputs = derivatives_of(out, "shiftb", raws["shiftb"])
    biased = {
        "t1w": with_bias(inputs["t1w"], root / "raw_biased.nii.gz"),
        "t1w_preproc": with_bias(inputs["t1w_preproc"], root / "n4_biased.nii.gz"),
    }
    add_broken(out, "uncorrected", compute_iqms(**{**inputs, **biased}))
    group = smriflow_cli("run", "qc_group", "--output-dir", str(out))
    assert group.returncode == 0, group.stdout + group.stderr
    table = pd.read_csv(out / "group_desc-iqms_T1w.tsv", sep="\t", keep_default_na=False, dtype=str)
    return SimpleNamespace(root=root, out=out, table=table.set_index("subject"))


def end_to_end(test):
    for mark in (pytest.mark.slow, pytest.mark.ants, pytest.mark.shared, pytest.mark.xdist_group("qc")):
        test = mark(test)
    return test


@end_to_end
def test_anat_preproc_writes_the_iqm_json(cohort):
    for label in OFFSETS:
        path = cohort.out / f"sub-{label}" / "anat" / f"sub-{label}_desc-iqms_T1w.json"
        values = json.loads(path.read_text())
        assert list(values) == sorted(values) and len(values) == 72  # 68 image IQMs + 4 of thickness
        thickness = {"thickness_mean_lh", "thickness_mean_rh", "thickness_frac_below", "thickness_frac_above"}
        assert thickness < set(values)
        assert not (path.parent / f"sub-{label}_desc-iqms_T1w.json.json").exists()
        # plausible values for a good (3 mm) T1w
        assert 900 < values["volume_brain_cm3"] < 1200 and values["reg_dice"] > 0.95
        assert values["mask_lcc_fraction"] == 1.0 and 0.2 < values["cjv"] < 0.4


@end_to_end
def test_group_qc_flags_the_broken_variants_with_the_right_reason(cohort):
    table = cohort.table
    assert sorted(table.index) == sorted([*OFFSETS, "erodedmask", "uncorrected"])
    assert table.loc[list(OFFSETS), "qc_flag"].tolist() == ["false"] * 4, table.loc[
        list(OFFSETS), "qc_reasons"
    ]
    assert table.loc[list(OFFSETS), "qc_reasons"].tolist() == [""] * 4
    eroded = table.loc["erodedmask", "qc_reasons"].split("; ")
    assert table.loc["erodedmask", "qc_flag"] == "true"
    assert eroded[0].startswith("brain volume ") and eroded[0].endswith(" cm³ below 800 cm³")
    uncorrected = table.loc["uncorrected", "qc_reasons"].split("; ")
    assert table.loc["uncorrected", "qc_flag"] == "true"
    assert any(reason.startswith("cjv ") for reason in uncorrected), uncorrected
    assert not any(reason.startswith("brain volume") for reason in uncorrected)
