"""``smriflow stats harmonize`` and ``smriflow stats roi --harmonize``: outputs, summary, one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smriflow.cli.main import main

DATA = Path(__file__).resolve().parents[1] / "data" / "harmonize"
ROIS = ["lh_superiorfrontal", "lh_precuneus", "rh_insula", "rh_lingual", "rh_posteriorcingulate"]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _files(tmp_path: Path, change=None) -> tuple[Path, Path]:
    study = pd.read_csv(DATA / "study.tsv", sep="\t")
    if change is not None:
        change(study)
    study[["participant_id", *ROIS]].to_csv(tmp_path / "rois.tsv", sep="\t", index=False, na_rep="n/a")
    study[["participant_id", "site", "age", "sex", "dx"]].to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False, na_rep="n/a"
    )
    return tmp_path / "rois.tsv", tmp_path / "participants.tsv"


def test_harmonize_command(tmp_path):
    table, participants = _files(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli("stats", "harmonize", "--table", table, "--participants", participants,
                                "--site", "site", "--covariates", "age + C(sex) + C(dx)",
                                "--output-dir", out)  # fmt: skip
    assert code == 0 and stdout == "", err
    lines = err.splitlines()
    assert lines[0] == "harmonize: ComBat of 5 ROIs, 72 subjects, 4 sites (A 20, B 15, C 25, D 12)"
    assert lines[1] == "  preserved: C(sex)[T.1.0], C(dx)[T.1.0], age"
    assert lines[2].startswith("  variance explained by site beyond the covariates, median ROI: ")
    written = [line.removeprefix("wrote ") for line in lines[3:]]
    assert written[:3] == [
        str(out / "harmonized.tsv"),
        str(out / "site_variance.tsv"),
        str(out / "harmonize.json"),
    ]
    assert sorted(Path(p).name for p in written[3:]) == sorted(p.name for p in (out / "figures").iterdir())
    assert len(written[3:]) == 5 and all(Path(p).stat().st_size > 0 for p in written)
    harmonized = pd.read_csv(out / "harmonized.tsv", sep="\t")
    reference = pd.read_csv(DATA / "neuroharmonize_combat.tsv", sep="\t")
    np.testing.assert_allclose(harmonized[ROIS], reference[ROIS], rtol=0, atol=1e-6)
    meta = json.loads((out / "harmonize.json").read_text())
    assert meta["method"] == "ComBat" and meta["sites"] == {"A": 20, "B": 15, "C": 25, "D": 12}
    assert meta["median_site_r2_unique_after"] < 0.01 < meta["median_site_r2_unique_before"]


def test_harmonize_command_gam_and_roi(tmp_path):
    table, participants = _files(tmp_path)
    code, _, err = run_cli("stats", "harmonize", "--table", table, "--participants", participants,
                           "--site", "site", "--covariates", "C(sex) + C(dx)", "--smooth-terms", "age",
                           "--roi", "lh_precuneus", "rh_insula", "--no-figures",
                           "--output-dir", tmp_path / "g")  # fmt: skip
    assert code == 0, err
    assert err.splitlines()[0].startswith("harmonize: ComBat-GAM of 2 ROIs, 72 subjects")
    assert "smooth: age" in err and not (tmp_path / "g" / "figures").exists()
    harmonized = pd.read_csv(tmp_path / "g" / "harmonized.tsv", sep="\t")
    assert list(harmonized.columns) == ["participant_id", "lh_precuneus", "rh_insula"]
    # harmonized per ROI, with other ROIs absent the empirical Bayes priors differ from the 5-ROI run
    assert np.isfinite(harmonized[["lh_precuneus", "rh_insula"]].to_numpy()).all()


def test_roi_with_harmonize(tmp_path):
    table, participants = _files(tmp_path)
    out = tmp_path / "roi"
    code, _, err = run_cli("stats", "roi", "--table", table, "--participants", participants, "--formula",
                           "{roi} ~ age + C(sex) + C(dx)", "--predictor", "dx", "--missing", "drop",
                           "--correction", "holm", "--harmonize", "site", "--output-dir", out)  # fmt: skip
    assert code == 0, err
    assert "harmonized across 4 sites of 'site' (ComBat, covariates of the formula preserved)" in err
    assert f"wrote {out / 'harmonize' / 'harmonized.tsv'}" in err.splitlines()
    assert json.loads((out / "roi_glm.json").read_text())["harmonize"] == "site"
    assert (out / "harmonize" / "figures" / "harmonize_site_variance_parietal.png").is_file()
    assert (out / "figures" / "roi_glm_pvalues.png").is_file()


HOLE = (
    "ROI tables: 1 missing values (sub-004 rh_insula …); ComBat needs every ROI of every subject: drop those "
)
HOLE += "subjects or ROIs (--roi)"
ALONE = (
    "participants.tsv: site 'E' of column 'site' has 1 subject (sub-001); ComBat needs at least 2 per site: "
)
ALONE += "drop that subject or merge the site with another"
AVAILABLE = "Did you mean 'site'? Available: age, dx, sex, site"


def _lonely(study: pd.DataFrame) -> None:
    study.loc[0, "site"] = "E"


def _hole(study: pd.DataFrame) -> None:
    study.loc[3, "rh_insula"] = np.nan


@pytest.mark.parametrize(
    ("command", "site", "change", "message"),
    [
        ("harmonize", "Site", None, f"participants.tsv: no site column 'Site'. {AVAILABLE}"),
        ("harmonize", "site", _lonely, ALONE),
        ("harmonize", "site", _hole, HOLE),
        ("roi", "Site", None, f"--harmonize Site: no such column in participants.tsv. {AVAILABLE}"),
        ("roi", "site", _lonely, ALONE),
        ("roi", "site", _hole, HOLE),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, command, site, change, message):
    table, participants = _files(tmp_path, change)
    monkeypatch.chdir(tmp_path)
    inputs = ["--table", table.name, "--participants", participants.name, "--output-dir", "out"]
    if command == "harmonize":
        argv = ["stats", "harmonize", *inputs, "--site", site, "--covariates", "age + C(sex) + C(dx)"]
    else:
        argv = ["stats", "roi", *inputs, "--formula", "{roi} ~ age + C(dx)", "--predictor", "age",
                "--missing", "drop", "--correction", "holm", "--harmonize", site]  # fmt: skip
    code, _, err = run_cli(*argv)
    assert code == 2
    assert err == f"smriflow stats {command}: {message}\n"


def test_help_lists_harmonize():
    code, out, _ = run_cli("stats", "--help")
    assert code == 0 and "harmonize" in out
    code, out, _ = run_cli("stats", "harmonize", "--help")
    assert code == 0
    for option in ("--site", "--covariates", "--smooth-terms", "--missing", "--no-eb", "--seed"):
        assert option in out


def test_roiglm_interface_with_harmonize(tmp_path):
    from smriflow.interfaces.stats import ROIGLM

    table, participants = _files(tmp_path)
    (tmp_path / "glm").mkdir()
    interface = ROIGLM(table=str(table), participants=str(participants), predictor="dx", correction="holm",
                       formula="{roi} ~ age + C(sex) + C(dx)", harmonize="site")  # fmt: skip
    result = interface.run(cwd=str(tmp_path / "glm"))
    outputs = result.outputs
    assert Path(outputs.out_harmonized).name == "harmonized.tsv"
    assert Path(outputs.out_site_variance).name == "site_variance.tsv"
    assert not [f for f in outputs.out_figures if not f.endswith((".png", ".nii.gz", ".gii"))]
    assert any(Path(f).name == "harmonize_site_variance_insula.png" for f in outputs.out_figures)


@pytest.mark.slow
def test_roi_glm_workflow_with_harmonize(tmp_path, monkeypatch):
    """``smriflow run roi_glm --set harmonize=site`` publishes the files ``stats roi --harmonize`` writes."""
    table, participants = _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli("run", "roi_glm", "--output-dir", out, "--work-dir", tmp_path / "work",
                           "--set", "table=rois.tsv", "--set", "participants=participants.tsv",
                           "--set", "formula='{roi} ~ age + C(sex) + C(dx)'", "--set", "predictor=dx",
                           "--set", "harmonize=site")  # fmt: skip
    assert code == 0, err
    direct = tmp_path / "direct"
    code, _, err = run_cli("stats", "roi", "--table", table, "--participants", participants, "--formula",
                           "{roi} ~ age + C(sex) + C(dx)", "--predictor", "dx", "--missing", "drop",
                           "--correction", "fdr_bh", "--harmonize", "site",
                           "--output-dir", direct)  # fmt: skip
    assert code == 0, err
    for name in ("harmonized.tsv", "site_variance.tsv"):
        assert (out / "roi_glm" / "harmonize" / name).read_bytes() == (
            direct / "harmonize" / name
        ).read_bytes()
    assert (out / "roi_glm" / "roi_glm.tsv").read_bytes() == (direct / "roi_glm.tsv").read_bytes()
    assert (out / "roi_glm" / "figures" / "harmonize_site_variance_frontal.png").is_file()
