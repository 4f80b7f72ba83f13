"""``smriflow stats fs-table | roi | compare`` on the shared data, their one-line errors, the interfaces
and the group workflows ``roi_glm`` and ``compare_pipelines``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _helpers import run_cli
from conftest import require_shared

from smriflow.cli import stats as cli_stats
from smriflow.stats import freesurfer
from smriflow.stats.roi_glm import RESULT_COLUMNS

FS_STATS = ("aomic", "derivatives", "fs_stats")
THICKNESS = "data-cortical_type-aparc_measure-thickness_hemi-{}.tsv"




def test_cli_choices_equal_the_stats_layer():
    assert cli_stats.APARC_MEASURES == tuple(freesurfer.APARC_MEASURES)
    assert cli_stats.ASEG_MEASURES == tuple(freesurfer.ASEG_MEASURES)


@pytest.mark.shared
def test_fs_table_equals_freesurfer(shared_data, tmp_path):
    subjects_dir = require_shared("aomic", "derivatives", "freesurfer")
    out = tmp_path / "lh.tsv"
    code, _, err = run_cli("stats", "fs-table", "--subjects-dir", subjects_dir, "--subject", "sub-0001",
                           "--stats", "aparc", "--hemi", "lh", "--meas", "thickness", "-o", out)  # fmt: skip
    assert code == 0, err
    reference = require_shared(*FS_STATS, THICKNESS.format("lh")).read_text().splitlines()
    assert out.read_text().splitlines() == reference[:2]
    code, _, err = run_cli("stats", "fs-table", "--subjects-dir", subjects_dir, "--stats", "aseg",
                           "--format", "long", "-o", tmp_path / "aseg_long.tsv")  # fmt: skip
    assert code == 0, err
    long = pd.read_csv(tmp_path / "aseg_long.tsv", sep="\t")
    etiv = long[(long.section == "header") & (long.measure == "eTIV")]
    assert etiv[["value", "units"]].iloc[0].tolist() == [1560838.764254, "mm^3"]


@pytest.mark.shared
def test_roi_glm_end_to_end_on_the_shared_dk_thickness(shared_data, tmp_path):
    tables = [require_shared(*FS_STATS, THICKNESS.format(h)) for h in ("lh", "rh")]
    participants = require_shared("aomic", "participants.tsv")
    code, _, err = run_cli(
        "stats", "roi", "--table", tables[0], "--table", tables[1], "--participants", participants,
        "--formula", "{roi} ~ age + eTIV + C(sex)", "--predictor", "age", "--missing", "drop",
        "--correction", "fdr_bh", "--alpha", "0.05", "--output-dir", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(tmp_path / "roi_glm.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == RESULT_COLUMNS and len(table) == 68
    assert set(table.n) == {224}
    assert "age: dropped 2 (sub-0105, sub-0199)" in err
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == [
        "roi_glm_hemi-L_space-fsaverage5_desc-t.func.gii",
        "roi_glm_hemi-R_space-fsaverage5_desc-t.func.gii",
        "roi_glm_pvalues.png",
        "roi_glm_scatter.png",
        "roi_glm_surf.png",
        "roi_glm_tmap.nii.gz",
        "roi_glm_tmap.png",
    ]


@pytest.mark.shared
def test_compare_end_to_end_on_abide(shared_data, tmp_path):
    table = require_shared("abide", "ABIDE_CT_pipelines_DKT_software_QC.csv")
    code, _, err = run_cli("stats", "compare", "--table", table, "--pipeline-column", "software",
                           "--qc-column", "QC_pass", "--output-dir", tmp_path)  # fmt: skip
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "compare.tsv", sep="\t")) == 62 * 3
    assert "excluded by QC: 94 subjects" in err


def _small_study(tmp_path: Path, n: int = 12) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ids = [f"sub-{i:02d}" for i in range(n)]
    age = rng.uniform(20, 60, n).round(1)
    pd.DataFrame({"participant_id": ids, "age": age, "sex": ["F", "M"] * (n // 2), "site": "A"}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False
    )
    wide = {"lh.aparc.thickness": ids}
    for roi in ("bankssts", "cuneus"):
        wide[f"lh_{roi}_thickness"] = (3 - 0.01 * age + rng.normal(0, 0.05, n)).round(4)
    wide["eTIV"] = rng.normal(1.5e6, 1e5, n).round(2)
    pd.DataFrame(wide).to_csv(tmp_path / "lh.tsv", sep="\t", index=False)
    return tmp_path / "lh.tsv", tmp_path / "participants.tsv"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--formula": "{roi} ~ agee + C(sex)"},
         "participants.tsv: unknown column 'agee'. Did you mean 'age'?"),
        ({"--formula": "{roi} ~ age + site", "--predictor": "age"},
         "participants.tsv: predictor 'site' has no variance (all 'A', n=12)"),
        ({"--formula": "{roi} ~ age + eTIV + C(sex) + age:eTIV + I(age**2) + I(eTIV**2) + age:C(sex) "
                       "+ eTIV:C(sex) + I(age**3) + I(eTIV**3) + I(age**2):C(sex)"},
         "participants.tsv: 12 subjects for 12 model parameters"),
        ({"--predictor": "weight"}, "--predictor weight: not a term of"),
        ({"--participants": "missing.tsv"}, "missing.tsv: participants file not found"),
        ({"--table": "nope.tsv"}, "nope.tsv: table not found"),
    ],
)  # fmt: skip
def test_roi_bad_values_are_one_line_and_exit_2(tmp_path, change, message):
    table, participants = _small_study(tmp_path)
    options = {
        "--table": table,
        "--participants": participants,
        "--formula": "{roi} ~ age + C(sex)",
        "--predictor": "age",
        "--missing": "drop",
        "--correction": "holm",
        "--output-dir": tmp_path / "o",
    }
    for key, value in change.items():
        options[key] = tmp_path / value if key in ("--participants", "--table") else value
    argv = ["stats", "roi", *[str(x) for pair in options.items() for x in pair]]
    code, out, err = run_cli(*argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("smriflow stats roi: ") and message in err, err


def test_argparse_rejects_bad_choices(tmp_path):
    table, participants = _small_study(tmp_path)
    code, _, err = run_cli("stats", "roi", "--table", table, "--participants", participants, "--formula",
                           "{roi} ~ age", "--predictor", "age", "--missing", "drop", "--correction", "fdr",
                           "--output-dir", tmp_path)  # fmt: skip
    assert code == 2 and "argument --correction: invalid choice: 'fdr'" in err
    code, _, err = run_cli("stats", "roi", "--table", table, "--participants", participants, "--formula",
                           "{roi} ~ age", "--predictor", "age", "--missing", "drop", "--alpha", "5",
                           "--output-dir", tmp_path)  # fmt: skip
    assert code == 2 and "argument --alpha: 'alpha' must be in (0, 1). 5.0 was provided." in err


def test_fs_table_and_compare_bad_values(tmp_path):
    (tmp_path / "s1" / "stats").mkdir(parents=True)
    (tmp_path / "s1" / "stats" / "lh.aparc.stats").write_text("# ColHeaders StructName NumVert\nx 1\n")
    code, _, err = run_cli(
        "stats", "fs-table", "--subjects-dir", tmp_path, "--stats", "aparc", "-o", tmp_path / "t"
    )
    assert code == 2
    assert (
        err == "smriflow stats fs-table: --stats aparc: a surface stats file (lh.aparc.stats): "
        "give --hemi lh or rh\n"
    )
    table, _ = _small_study(tmp_path)
    code, _, err = run_cli("stats", "compare", "--table", table, "--output-dir", tmp_path / "c")
    assert code == 2
    assert err == (
        "smriflow stats compare: --table: give two or more tables (one per pipeline), or --pipeline-column\n"
    )


def test_interfaces_run(tmp_path):
    from smriflow.interfaces.stats import ROIGLM, ComparePipelines, FSStatsTable

    stats = tmp_path / "fs" / "s1" / "stats"
    stats.mkdir(parents=True)
    (stats / "aseg.stats").write_text(
        "# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Vol, 1500000.5, mm^3\n"
        "# ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean normStdDev normMin normMax range\n"
        "  1  17  4000  4100.5  Left-Hippocampus  80.0  5.0  60.0  100.0  40.0\n"
    )
    (tmp_path / "fst").mkdir()
    result = FSStatsTable(subjects_dir=str(tmp_path / "fs"), stats="aseg").run(cwd=str(tmp_path / "fst"))
    assert Path(result.outputs.out_table).read_text() == (
        "Measure:volume\tLeft-Hippocampus\tEstimatedTotalIntraCranialVol\ns1\t4100.5\t1500000.5\n"
    )

    table, participants = _small_study(tmp_path)
    (tmp_path / "glm").mkdir()
    (tmp_path / "cmp").mkdir()
    result = ROIGLM(table=str(table), participants=str(participants), formula="{roi} ~ age + C(sex)",
                    predictor="age", correction="holm", figures=False, rois=["cuneus"])  # fmt: skip
    result = result.run(cwd=str(tmp_path / "glm"))
    frame = pd.read_csv(result.outputs.out_table, sep="\t")
    assert list(frame.columns) == RESULT_COLUMNS and frame.roi.tolist() == ["cuneus"]
    assert not result.outputs.out_figures
    second = tmp_path / "lh2.tsv"
    wide = pd.read_csv(table, sep="\t")
    wide.iloc[:, 1:3] += 0.01
    wide.to_csv(second, sep="\t", index=False)
    result = ComparePipelines(tables=[str(table), str(second)], names=["a", "b"], figures=False).run(
        cwd=str(tmp_path / "cmp")
    )
    frame = pd.read_csv(result.outputs.out_table, sep="\t")
    assert len(frame) == 2 and np.allclose(frame.mean_diff, -0.01) and np.allclose(frame.icc3_1, 1)


@pytest.mark.slow
def test_group_workflows_run(tmp_path, monkeypatch):
    """``smriflow run roi_glm`` and ``compare_pipelines`` write their path: outputs (relative --set paths)."""
    table, participants = _small_study(tmp_path)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("run", "roi_glm", "--output-dir", out, "--work-dir", tmp_path / "work",
                           "--set", "table=lh.tsv", "--set", "participants=participants.tsv",
                           "--set", "formula='{roi} ~ age + C(sex)'", "--set", "correction=holm")  # fmt: skip
    assert code == 0, err
    produced = sorted(str(p.relative_to(out)) for p in (out / "roi_glm").rglob("*") if p.is_file())
    assert produced == [
        "roi_glm/design.tsv", "roi_glm/figures/roi_glm_hemi-L_space-fsaverage5_desc-t.func.gii",
        "roi_glm/figures/roi_glm_hemi-R_space-fsaverage5_desc-t.func.gii",
        "roi_glm/figures/roi_glm_pvalues.png", "roi_glm/figures/roi_glm_scatter.png",
        "roi_glm/figures/roi_glm_surf.png", "roi_glm/figures/roi_glm_tmap.nii.gz",
        "roi_glm/figures/roi_glm_tmap.png", "roi_glm/missing.tsv", "roi_glm/roi_glm.json",
        "roi_glm/roi_glm.tsv",
    ]  # fmt: skip
    direct = tmp_path / "direct"
    run_cli("stats", "roi", "--table", table, "--participants", participants, "--formula",
            "{roi} ~ age + C(sex)", "--predictor", "age", "--missing", "drop", "--correction", "holm",
            "--output-dir", direct)  # fmt: skip
    assert (out / "roi_glm/roi_glm.tsv").read_bytes() == (direct / "roi_glm.tsv").read_bytes()
    code, _, err = run_cli("run", "compare_pipelines", "--output-dir", out, "--work-dir", tmp_path / "work2",
                           "--set", "tables=[lh.tsv, lh.tsv]", "--set", "names=[a, b]")  # fmt: skip
    assert code == 0, err
    compare = pd.read_csv(out / "compare_pipelines" / "compare.tsv", sep="\t")
    assert len(compare) == 2 and np.allclose(compare.pearson_r, 1)


def test_roi_table_turns_smriflow_subject_tables_into_wide_and_long(tmp_path):
    for label, scale in (("01", 1.0), ("02", 1.1)):
        anat = tmp_path / "deriv" / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        pd.DataFrame(
            {"label": [17, 1035], "name": ["Left-Hippocampus", "ctx-lh-insula"], "voxels": [4000, 7000],
             "volume_mm3": [4000.0 * scale, 7000.5 * scale], "gm_volume_mm3": [3000.0, 6000.0]}
        ).to_csv(anat / f"sub-{label}_atlas-desikankilliany_volumes.tsv", sep="\t", index=False)  # fmt: skip
        pd.DataFrame({"gm_volume_mm3": [6e5 * scale], "tiv_mm3": [1.4e6 * scale]}).to_csv(
            anat / f"sub-{label}_desc-summary_volumes.tsv", sep="\t", index=False
        )
    tables = sorted((tmp_path / "deriv").rglob("*_volumes.tsv"))
    code, _, err = run_cli("stats", "roi-table", "--table", *tables, "-o", tmp_path / "wide.tsv")
    assert code == 0, err
    assert (tmp_path / "wide.tsv").read_text().splitlines() == [
        "participant_id\tLeft-Hippocampus\tctx-lh-insula\tgm_volume_mm3\ttiv_mm3",
        "sub-01\t4000\t7000.5\t600000\t1400000",
        "sub-02\t4400\t7700.55\t660000\t1540000",
    ]
    code, _, err = run_cli(
        "stats", "roi-table", "--table", *tables, "--format", "long", "-o", tmp_path / "l.tsv"
    )
    assert code == 0, err
    long = pd.read_csv(tmp_path / "l.tsv", sep="\t", keep_default_na=False)
    row = long[(long.participant_id == "sub-02") & (long.roi == "insula")].iloc[0]
    assert (row.hemi, row.measure, row.atlas, row.value) == ("lh", "volume_mm3", "desikankilliany", 7700.55)
