"""QC interfaces (ComputeIQMs, AddTemplateIQMs, AddThicknessIQMs, GroupIQMTable) and the group workflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import _qc_data
import pandas as pd
import pytest

from smriflow.interfaces.qc import AddTemplateIQMs, AddThicknessIQMs, ComputeIQMs, GroupIQMTable
from smriflow.qc.iqms import add_thickness_iqms, compute_iqms, write_iqms


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> dict:
    return _qc_data.make_subject(tmp_path_factory.mktemp("qc_iface"))


def run_compute(subject: dict, cwd: Path, *, template_images: bool = True) -> Path:
    """ComputeIQMs on the synthetic subject; without ``template_images``, the native metrics only."""
    cwd.mkdir(parents=True, exist_ok=True)
    template = {"std_t1w": subject["std_t1w"], "std_tpms": subject["std_tpms"]} if template_images else {}
    result = ComputeIQMs(
        in_file=subject["t1w"],
        in_preproc=subject["t1w_preproc"],
        in_bias=subject["bias"],
        in_mask=subject["mask"],
        in_dseg=subject["dseg"],
        in_tpms=subject["tpms"],
        **template,
    ).run(cwd=str(cwd))
    return Path(result.outputs.out_file)


def test_compute_iqms_writes_the_function_result(subject, tmp_path):
    out = run_compute(subject, tmp_path)
    assert out == tmp_path / "iqms.json"
    values = json.loads(out.read_text())
    assert values == compute_iqms(**subject)
    assert list(values) == sorted(values) and all(isinstance(v, float) for v in values.values())
    again = run_compute(subject, tmp_path / "again")
    assert again.read_bytes() == out.read_bytes()


def test_the_template_metrics_join_in_a_node_of_their_own(subject, tmp_path):
    """Native metrics first (no template images), the template ones added: the bytes of one ComputeIQMs."""
    whole = run_compute(subject, tmp_path / "whole")
    native = run_compute(subject, tmp_path / "native", template_images=False)
    values = json.loads(native.read_text())
    template_keys = [key for key in json.loads(whole.read_text()) if key not in values]
    assert sorted(template_keys) == [
        "reg_dice",
        "reg_ncc",
        "tpm_overlap_csf",
        "tpm_overlap_gm",
        "tpm_overlap_wm",
    ]
    joined = AddTemplateIQMs(
        in_file=str(native), std_t1w=subject["std_t1w"], std_tpms=subject["std_tpms"]
    ).run(cwd=str(tmp_path))
    assert Path(joined.outputs.out_file).read_bytes() == whole.read_bytes()


def test_compute_iqms_refuses_two_tissue_maps(subject, tmp_path):
    iface = ComputeIQMs(
        in_file=subject["t1w"],
        in_preproc=subject["t1w_preproc"],
        in_bias=subject["bias"],
        in_mask=subject["mask"],
        in_dseg=subject["dseg"],
        in_tpms=subject["tpms"][:2],
        std_t1w=subject["std_t1w"],
        std_tpms=subject["std_tpms"],
    )
    with pytest.raises(ValueError, match=r"'tpms' and 'std_tpms' must list 3 files"):
        iface.run(cwd=str(tmp_path))


def _derivatives(subject: dict, root: Path, labels: list[str]) -> None:
    source = run_compute(subject, root / "_work")
    for label in labels:
        anat = root / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        shutil.copy(source, anat / f"sub-{label}_desc-iqms_T1w.json")
    shutil.rmtree(root / "_work")


def test_group_table_interface(subject, tmp_path):
    deriv = tmp_path / "deriv"
    _derivatives(subject, deriv, ["01", "02"])
    result = GroupIQMTable(derivatives_dir=str(deriv), brain_volume_min=50.0).run(cwd=str(tmp_path))
    table = pd.read_csv(result.outputs.out_tsv, sep="\t", dtype={"subject": str}, keep_default_na=False)
    assert Path(result.outputs.out_tsv).name == "group_desc-iqms_T1w.tsv"
    assert table["subject"].tolist() == ["01", "02"]
    # the synthetic brain is 60 cm³: below the default 800 cm³, accepted with brain_volume_min=50
    assert table["qc_flag"].tolist() == [False, False]
    (tmp_path / "default").mkdir()
    default = GroupIQMTable(derivatives_dir=str(deriv)).run(cwd=str(tmp_path / "default"))
    flagged = pd.read_csv(default.outputs.out_tsv, sep="\t", keep_default_na=False)
    assert flagged["qc_reasons"].tolist() == ["brain volume 60 cm³ below 800 cm³"] * 2


def test_qc_group_runs_through_the_cli(subject, tmp_path):
    from smriflow.cli.main import main

    deriv = tmp_path / "deriv"
    _derivatives(subject, deriv, ["01", "02", "03"])
    code = main(["run", "qc_group", "--output-dir", str(deriv), "--set", "brain_volume_min=50"])
    assert code == 0
    table = pd.read_csv(deriv / "group_desc-iqms_T1w.tsv", sep="\t", dtype={"subject": str})
    assert table["subject"].tolist() == ["01", "02", "03"] and not table["qc_flag"].any()
    assert not (deriv / "dataset_description.json").exists()  # a group run does not write one


def test_the_thickness_record_joins_the_iqms(tmp_path):
    """CorticalThickness's record joins the metrics: its finite 'iqms', the rest (and notes) unchanged."""
    record = tmp_path / "thickness.json"
    iqms = {"thickness_mean_lh": 2.61, "thickness_mean_rh": 2.58, "thickness_frac_below": 0.01}
    record.write_text(json.dumps({"iqms": {**iqms, "thickness_frac_above": float("nan")}, "voxels": 9}))
    measured = write_iqms({"snr_wm": 12.5, "cjv": float("nan")}, tmp_path / "in.json", {"cjv": "zero spread"})
    result = AddThicknessIQMs(in_file=measured, thickness_record=str(record)).run(cwd=str(tmp_path))
    values = json.loads(Path(result.outputs.out_file).read_text())
    # the NaN share is left out (JSON has no NaN); the measured null keeps its note
    assert values == {"cjv": None, "snr_wm": 12.5, **iqms, "notes": {"cjv": "zero spread"}}
    (tmp_path / "alone").mkdir()
    alone = AddThicknessIQMs(in_file=measured).run(cwd=str(tmp_path / "alone"))
    assert Path(alone.outputs.out_file).read_bytes() == Path(measured).read_bytes()


def test_an_unreadable_thickness_record_is_named(tmp_path):
    record = tmp_path / "thickness.json"
    record.write_text(json.dumps({"voxels": 9}))
    measured = write_iqms({"snr_wm": 12.5}, tmp_path / "in.json")
    with pytest.raises(ValueError, match=r"^.*thickness\.json: cannot read the thickness record's 'iqms'"):
        add_thickness_iqms(measured, record, tmp_path / "out.json")
