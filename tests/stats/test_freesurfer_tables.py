"""FreeSurfer stats parsing, aparcstats2table/asegstats2table tables, and ROI tables of every origin."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import require_shared

from smriflow.stats.freesurfer import (
    collect_long_table,
    long_table,
    read_stats,
    stats_table,
    write_wide_table,
)
from smriflow.stats.tables import atlas_label_for, read_roi_table, read_roi_tables, split_hemi

FS = ("aomic", "derivatives", "freesurfer")
FS_STATS = ("aomic", "derivatives", "fs_stats")

APARC = """# Table of FreeSurfer cortical parcellation anatomical statistics
# hemi {hemi}
# Measure Cortex, NumVert, Number of Vertices, 1000, unitless
# Measure Cortex, WhiteSurfArea, White Surface Total Area, 900.5, mm^2
# Measure Cortex, MeanThickness, Mean Thickness, 2.5, mm
# Measure BrainSegNotVent, BrainSegVolNotVent, Brain Segmentation Volume No Ventricles, 1000000.000000, mm^3
# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, {etiv}, mm^3
# TableCol  3 ColHeader SurfArea
# TableCol  3 Units     mm^2
# TableCol  5 ColHeader ThickAvg
# TableCol  5 Units     mm
# ColHeaders StructName NumVert SurfArea GrayVol ThickAvg ThickStd MeanCurv GausCurv FoldInd CurvInd
{rows}"""


def _subject(root: Path, subject: str, rows: list[str], hemi: str = "lh", etiv: str = "1500000.25") -> None:
    stats = root / subject / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    (stats / f"{hemi}.aparc.stats").write_text(
        APARC.format(hemi=hemi, etiv=etiv, rows="\n".join(rows) + "\n")
    )


ROW_A = "bankssts   100 90 300 2.100 0.5 0.12 0.02 10 1.0"
ROW_B = "cuneus     200 80 250 1.900 0.4 0.13 0.03 11 1.1"


@pytest.mark.shared
def test_aparc_table_matches_freesurfer_shared_subject(shared_data, tmp_path):
    """Header and the sub-0001 row equal FreeSurfer's own aparcstats2table output, byte for byte."""
    subjects_dir = require_shared(*FS)
    for hemi in ("lh", "rh"):
        table = stats_table(subjects_dir, "aparc", subjects=["sub-0001"], hemi=hemi, meas="thickness")
        out = write_wide_table(table, tmp_path / f"{hemi}.tsv").read_text().splitlines()
        reference = require_shared(*FS_STATS, f"data-cortical_type-aparc_measure-thickness_hemi-{hemi}.tsv")
        ref = reference.read_text().splitlines()
        assert out[0] == ref[0]
        assert out[1] == next(line for line in ref if line.startswith("sub-0001\t"))
        assert out[0].split("\t")[-3:] == [f"{hemi}_MeanThickness_thickness", "BrainSegVolNotVent", "eTIV"]


@pytest.mark.shared
def test_read_stats_shared_aseg_header_units_and_malformed_measure(shared_data):
    aseg = read_stats(require_shared(*FS, "sub-0001", "stats", "aseg.stats"))
    assert aseg.kind == "volume" and len(aseg.rows) == 45 and len(aseg.measures) == 22
    etiv = next(m for m in aseg.measures if m.name == "eTIV")
    assert (etiv.structure, etiv.value, etiv.units) == (
        "EstimatedTotalIntraCranialVol",
        1560838.764254,
        "mm^3",
    )
    assert aseg.units["Volume_mm3"] == "mm^3" and aseg.units["normMean"] == "MR"
    lh = read_stats(require_shared(*FS, "sub-0001", "stats", "lh.aparc.stats"))
    assert lh.kind == "surface" and lh.hemi == "lh" and len(lh.rows) == 34
    # FreeSurfer 6 writes "# Measure Cortex, CortexVol Total cortical gray matter volume, …" (4 fields)
    cortex = next(m for m in lh.measures if m.name == "CortexVol")
    assert (cortex.value, cortex.units, cortex.description) == (
        527104.25066,
        "mm^3",
        "Total cortical gray matter volume",
    )
    assert lh.units["ThickAvg"] == "mm" and lh.units["MeanCurv"] == "mm^-1"


@pytest.mark.shared
@pytest.mark.parametrize(
    ("stats", "hemi", "n_rows"),
    [("aparc.a2009s", "lh", 74), ("aparc.DKTatlas", "rh", 31), ("BA_exvivo", "lh", 14),
     ("BA_exvivo.thresh", "rh", 14), ("wmparc", None, 70), ("aseg", None, 45)],
)  # fmt: skip
def test_every_shared_stats_file_parses(shared_data, stats, hemi, n_rows):
    name = f"{hemi}.{stats}.stats" if hemi else f"{stats}.stats"
    parsed = read_stats(require_shared(*FS, "sub-0001", "stats", name))
    assert len(parsed.rows) == n_rows
    table = parsed.table()
    assert table.shape == (n_rows, len(parsed.columns))


@pytest.mark.shared
def test_aseg_table_columns_as_asegstats2table(shared_data):
    table = stats_table(require_shared(*FS), "aseg")
    assert table.index.name == "Measure:volume" and list(table.index) == ["sub-0001"]
    assert list(table.columns[:2]) == ["Left-Lateral-Ventricle", "Left-Inf-Lat-Vent"]
    assert table.loc["sub-0001", "Left-Lateral-Ventricle"] == 4245.9
    # the global volumes follow the structures, in file order; VentricleChoroidVol is not one of them
    assert list(table.columns[45:48]) == ["BrainSegVol", "BrainSegVolNotVent", "BrainSegVolNotVentSurf"]
    assert table.columns[-1] == "EstimatedTotalIntraCranialVol"
    assert "VentricleChoroidVol" not in table.columns
    means = stats_table(require_shared(*FS), "aseg", meas="mean")
    assert means.shape[1] == 45 and means.loc["sub-0001", "Left-Lateral-Ventricle"] == 30.4424


def test_wide_table_union_zero_fill_and_measure_extras(tmp_path):
    _subject(tmp_path, "s1", [ROW_A, ROW_B])
    _subject(tmp_path, "s2", [ROW_B], etiv="1400000")
    thick = stats_table(tmp_path, "aparc", hemi="lh")
    assert thick.index.name == "lh.aparc.thickness"
    assert list(thick.columns) == [
        "lh_bankssts_thickness", "lh_cuneus_thickness", "lh_MeanThickness_thickness",
        "BrainSegVolNotVent", "eTIV",
    ]  # fmt: skip
    assert thick.loc["s2", "lh_bankssts_thickness"] == 0.0  # missing structure: 0.0, as aparcstats2table
    assert thick.loc["s1", "lh_cuneus_thickness"] == 1.9
    area = stats_table(tmp_path, "aparc", hemi="lh", meas="area")
    assert list(area.columns) == [
        "lh_bankssts_area",
        "lh_cuneus_area",
        "lh_WhiteSurfArea_area",
        "BrainSegVolNotVent",
        "eTIV",
    ]
    assert area.loc["s1", "lh_WhiteSurfArea_area"] == 900.5
    written = write_wide_table(area, tmp_path / "t.tsv").read_text().splitlines()
    assert written[1] == "s1\t90.0\t80.0\t900.5\t1000000.0\t1500000.25"


def test_fastsurfer_names_and_hemi_errors(tmp_path):
    _subject(tmp_path, "s1", [ROW_A])
    shutil.copy(tmp_path / "s1/stats/lh.aparc.stats", tmp_path / "s1/stats/lh.aparc.DKTatlas.mapped.stats")
    table = stats_table(tmp_path, "aparc.DKTatlas.mapped", hemi="lh", meas="volume")
    assert table.index.name == "lh.aparc.DKTatlas.mapped.volume" and table.iloc[0, 0] == 300.0
    with pytest.raises(
        ValueError, match=r"^--stats aparc: a surface stats file \(lh.aparc.stats\): give --hemi lh or rh$"
    ):
        stats_table(tmp_path, "aparc")
    with pytest.raises(
        ValueError, match="^--meas thick: not a surface measure; choose one of area, volume, thickness"
    ):
        stats_table(tmp_path, "aparc", hemi="lh", meas="thick")
    with pytest.raises(
        ValueError, match=re.escape(f"{tmp_path / 's9/stats/lh.aparc.stats'}: stats file not found")
    ):
        stats_table(tmp_path, "aparc", hemi="lh", subjects=["s9"])


def test_read_stats_errors(tmp_path):
    bad = tmp_path / "lh.x.stats"
    bad.write_text("# ColHeaders StructName NumVert\nbankssts 1 2\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: table row 1 has 3 fields, '# ColHeaders' has 2")):
        read_stats(bad)
    bad.write_text("bankssts 1 2\n")
    with pytest.raises(
        ValueError, match=re.escape(f"{bad}: not a FreeSurfer stats table (no '# ColHeaders' line)")
    ):
        read_stats(bad)


def test_long_table_every_cell_with_units(tmp_path):
    _subject(tmp_path, "s1", [ROW_A, ROW_B])
    parsed = read_stats(tmp_path / "s1/stats/lh.aparc.stats")
    long = long_table(parsed, "s1")
    assert len(long) == 5 + 2 * 9  # header measures + rows x numeric columns
    thick = long[(long.roi == "cuneus") & (long.measure == "ThickAvg")]
    assert thick[["value", "units", "hemi", "stats", "section"]].iloc[0].tolist() == [
        1.9,
        "mm",
        "lh",
        "aparc",
        "table",
    ]
    mean = long[(long.section == "header") & (long.measure == "MeanThickness")]
    assert mean[["roi", "value", "units"]].iloc[0].tolist() == ["Cortex", 2.5, "mm"]
    _subject(tmp_path, "s1", [ROW_A], hemi="rh")
    both = collect_long_table(tmp_path, "aparc")
    assert set(both.hemi) == {"lh", "rh"}


def test_split_hemi_and_atlas_label_mapping():
    assert split_hemi("lh_bankssts") == ("lh", "bankssts")
    assert split_hemi("Right-Hippocampus") == ("rh", "Hippocampus")
    assert split_hemi("ctx-rh-insula") == ("rh", "insula")
    assert split_hemi("Precentral_L") == ("lh", "Precentral")
    assert split_hemi("R_cuneus") == ("rh", "cuneus")
    assert split_hemi("Brain-Stem") == ("", "Brain-Stem")
    assert atlas_label_for("bankssts", "lh", "aparc") == "ctx-lh-bankssts"
    assert atlas_label_for("insula", "rh", "aparc.DKTatlas") == "ctx-rh-insula"
    assert atlas_label_for("G&S_frontomargin", "lh", "aparc.a2009s") == "ctx_lh_G_and_S_frontomargin"
    assert atlas_label_for("Hippocampus", "rh", "aseg") == "Right-Hippocampus"
    assert atlas_label_for("Brain-Stem", "", "aseg") == "Brain-Stem"
    assert atlas_label_for("Precentral_L", "lh", "aal") == "Precentral_L"


@pytest.mark.shared
def test_every_freesurfer_roi_maps_to_an_atlas_label(shared_data):
    """Every DK and Destrieux ROI of the shared subject has its label in the volume atlases."""
    from smriflow.data.atlases import atlas_labels

    for stats, atlas in (("aparc", "desikan_killiany"), ("aparc.a2009s", "destrieux")):
        names = set(atlas_labels(atlas)["name"])
        for hemi in ("lh", "rh"):
            parsed = read_stats(require_shared(*FS, "sub-0001", "stats", f"{hemi}.{stats}.stats"))
            missing = [r[0] for r in parsed.rows if atlas_label_for(r[0], hemi, stats) not in names]
            assert missing == []
    aseg = read_stats(require_shared(*FS, "sub-0001", "stats", "aseg.stats"))
    dk = set(atlas_labels("desikan_killiany")["name"])
    found = [r[4] for r in aseg.rows if atlas_label_for(*split_hemi(r[4])[::-1], "aseg") in dk]
    assert "Left-Hippocampus" in found and "Brain-Stem" in found


@pytest.mark.shared
def test_read_roi_tables_freesurfer_wide_covariates(shared_data):
    tables = [
        require_shared(*FS_STATS, f"data-cortical_type-aparc_measure-thickness_hemi-{h}.tsv")
        for h in ("lh", "rh")
    ]
    data = read_roi_tables(tables)
    assert data.values.shape == (226, 68)
    assert list(data.covariates.columns) == [
        "lh_MeanThickness_thickness", "BrainSegVolNotVent", "eTIV", "rh_MeanThickness_thickness",
    ]  # fmt: skip
    assert data.covariates.loc["0001", "eTIV"] == 1560838.764254
    first = data.rois.iloc[0].tolist()
    assert first == ["lh_bankssts_thickness", "bankssts", "lh", "thickness", "aparc"]
    long = data.long()
    assert len(long) == 226 * 68 and set(long.hemi) == {"lh", "rh"}


def test_read_roi_tables_smriflow_long_and_generic(tmp_path):
    # sub-02's names carry the entities of a filtered input (acq-, run-): still recognised
    for label, scale, entities in (("01", 1.0, ""), ("02", 2.0, "_acq-mprage_run-1")):
        pd.DataFrame(
            {"label": [17, 53], "name": ["Left-Hippocampus", "Right-Hippocampus"], "voxels": [10, 12],
             "volume_mm3": [4000.0 * scale, 4100.0 * scale], "gm_volume_mm3": [3000.0, 3100.0]}
        ).to_csv(
            tmp_path / f"sub-{label}{entities}_atlas-desikankilliany_volumes.tsv", sep="\t", index=False
        )  # fmt: skip
        pd.DataFrame({"gm_volume_mm3": [600000.0 * scale], "tiv_mm3": [1.4e6 * scale]}).to_csv(
            tmp_path / f"sub-{label}{entities}_desc-summary_volumes.tsv", sep="\t", index=False
        )
    data = read_roi_tables(sorted(tmp_path.glob("*_volumes.tsv")))
    assert list(data.values.index) == ["01", "02"]
    assert data.values.loc["02", "Left-Hippocampus"] == 8000.0
    assert data.covariates.loc["02", "tiv_mm3"] == 2.8e6
    row = data.rois[data.rois.key == "Right-Hippocampus"].iloc[0].tolist()
    assert row == ["Right-Hippocampus", "Hippocampus", "rh", "volume_mm3", "desikankilliany"]
    # the long form written back and read again gives the same values
    long = data.long()
    long = long[long.measure == "volume_mm3"]
    long.to_csv(tmp_path / "long.tsv", sep="\t", index=False)
    again = read_roi_table(tmp_path / "long.tsv")
    assert again.values.loc["01", "rh_Hippocampus"] == 4100.0
    generic = tmp_path / "generic.csv"
    generic.write_text("participant_id,L_cuneus,R_cuneus,site\nsub-01,2.5,2.6,A\n02,2.4,n/a,B\n")
    data = read_roi_table(generic)
    assert list(data.values.columns) == ["L_cuneus", "R_cuneus"] and pd.isna(
        data.values.loc["02", "R_cuneus"]
    )
    nothing = tmp_path / "x.tsv"
    nothing.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not a recognised ROI table"):
        read_roi_table(nothing)


def test_long_table_of_one_measure_reads_back_like_the_wide_one(tmp_path):
    _subject(tmp_path, "sub-01", [ROW_A, ROW_B])
    _subject(tmp_path, "sub-02", [ROW_A, ROW_B.replace("1.900", "2.200")])
    for subject in ("sub-01", "sub-02"):
        _subject(tmp_path, subject, [ROW_A], hemi="rh")
    long = collect_long_table(tmp_path, "aparc", meas="thickness")
    assert set(long.measure) == {"ThickAvg"} and set(long.section) == {"table"} and len(long) == 2 * 3
    long.to_csv(tmp_path / "long.tsv", sep="\t", index=False, na_rep="n/a")
    data = read_roi_table(tmp_path / "long.tsv")
    wide = stats_table(tmp_path, "aparc", hemi="lh", meas="thickness")
    assert data.values.loc["02", "lh_cuneus"] == wide.loc["sub-02", "lh_cuneus_thickness"] == 2.2
    assert data.rois.set_index("key").loc["rh_bankssts"].tolist() == ["bankssts", "rh", "ThickAvg", "aparc"]
    with pytest.raises(ValueError, match="^--meas mean: not a surface measure; choose one of area, volume"):
        collect_long_table(tmp_path, "aparc", meas="mean")
