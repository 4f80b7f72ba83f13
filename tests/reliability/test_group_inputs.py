"""Bad inputs of the group commands (``smriflow stats roi``, ``smriflow stats vbm``): one line, exit 2,
nothing written. Small synthetic tables and maps; the commands themselves are tested in tests/cli/ and
tests/stats/.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from _helpers import run_cli

N = 20




@pytest.fixture
def roi_inputs(tmp_path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    ids = [f"sub-{i:02d}" for i in range(N)]
    table = pd.DataFrame(
        {"participant_id": ids, "lh_a": rng.normal(3, 0.1, N), "rh_a": rng.normal(3, 0.1, N)}
    )
    table.to_csv(tmp_path / "roi.tsv", sep="\t", index=False)
    participants = pd.DataFrame(
        {"participant_id": ids, "age": rng.integers(18, 60, N), "sex": ["M", "F"] * (N // 2)}
    )
    return tmp_path / "roi.tsv", participants


def stats_roi(table: Path, participants: Path, out: Path) -> tuple[int, str, str]:
    return run_cli(
        "stats", "roi", "--table", table, "--participants", participants,
        "--formula", "{roi} ~ age + C(sex)", "--predictor", "age", "--missing", "drop",
        "--correction", "fdr_bh", "--no-figures", "--output-dir", out,
    )  # fmt: skip


def test_the_synthetic_roi_inputs_work(tmp_path, roi_inputs):
    table, participants = roi_inputs
    participants.to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    code, _, err = stats_roi(table, tmp_path / "participants.tsv", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "roi_glm.tsv").is_file()


def test_participants_without_the_column_of_the_formula(tmp_path, roi_inputs):
    table, participants = roi_inputs
    path = tmp_path / "participants.tsv"
    participants.drop(columns="age").to_csv(path, sep="\t", index=False)
    code, out, err = stats_roi(table, path, tmp_path / "out")
    assert (code, out) == (2, "")
    assert err == f"smriflow stats roi: {path}: unknown column 'age'. Available: sex\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("empty", ["\t\t", ""])
def test_participants_with_an_empty_row(tmp_path, roi_inputs, empty):
    table, participants = roi_inputs
    path = tmp_path / "participants.tsv"
    lines = participants.to_csv(sep="\t", index=False).splitlines()
    lines.insert(5, empty)
    path.write_text("\n".join(lines) + "\n")
    code, out, err = stats_roi(table, path, tmp_path / "out")
    assert (code, out) == (2, "")
    assert err == f"smriflow stats roi: {path}: line 6 is empty\n"
    assert not (tmp_path / "out").exists()


def test_participants_with_a_non_numeric_age_is_refused(tmp_path, roi_inputs):
    table, participants = roi_inputs
    path = tmp_path / "participants.tsv"
    participants["age"] = participants["age"].astype(str)
    participants.loc[3, "age"] = "twenty"
    participants.to_csv(path, sep="\t", index=False)
    code, out, err = stats_roi(table, path, tmp_path / "out")
    assert (code, out) == (2, "")
    assert err.startswith(f"smriflow stats roi: {path}: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_non_numeric_age_is_named_in_the_message(tmp_path, roi_inputs):
    table, participants = roi_inputs
    path = tmp_path / "participants.tsv"
    participants["age"] = participants["age"].astype(str)
    participants.loc[3, "age"] = "twenty"
    participants.to_csv(path, sep="\t", index=False)
    code, _, err = stats_roi(table, path, tmp_path / "out")
    assert code == 2
    assert err.endswith(
        ": column 'age' is used as a number but holds 'twenty' (sub-03); fix that value, "
        "or write C(age) to treat the column as a category\n"
    )
    assert err.count("\n") == 1


def test_a_jacobian_on_another_grid_than_its_gm_map(tmp_path):
    rng = np.random.default_rng(0)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    gm_maps, jacobians = [], []
    for index in range(8):
        gm_maps.append(tmp_path / f"sub-{index:02d}_label-GM_probseg.nii.gz")
        nb.Nifti1Image(rng.random((20, 24, 20), dtype=np.float32), affine).to_filename(gm_maps[-1])
        shape = (21, 24, 20) if index == 3 else (20, 24, 20)
        jacobians.append(tmp_path / f"sub-{index:02d}_J.nii.gz")
        nb.Nifti1Image(np.exp(rng.normal(0, 0.1, shape)).astype(np.float32), affine).to_filename(
            jacobians[-1]
        )
    ids = [f"sub-{index:02d}" for index in range(8)]
    pd.DataFrame({"participant_id": ids, "age": rng.integers(18, 60, 8)}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False
    )
    code, out, err = run_cli(
        "stats", "vbm", "--gm-maps", *gm_maps, "--jacobians", *jacobians, "--jacobian-convention", "fsl",
        "--participants", tmp_path / "participants.tsv", "--design", "age", "--contrast", "age",
        "--output-dir", tmp_path / "out",
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert err == (
        f"smriflow stats vbm: {jacobians[3]}: Jacobian grid (shape (21, 24, 20)) differs from the grid "
        f"of its GM map {gm_maps[3]} (shape (20, 24, 20), or the affines differ)\n"
    )
    assert not (tmp_path / "out").exists()
