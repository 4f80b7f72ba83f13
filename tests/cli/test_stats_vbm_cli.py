"""``smriflow stats vbm``: end to end (shared AOMIC subset, synthetic derivatives) and its errors."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from conftest import require_shared

from smriflow.cli import stats_vbm
from smriflow.cli.main import main
from smriflow.stats import vbm

OUTPUTS = [
    "clusters.tsv",
    "design_matrix.tsv",
    "effect.nii.gz",
    "figures/design_matrix.png",
    "figures/glass_brain.png",
    "figures/slices.png",
    "mask.nii.gz",
    "pmap.nii.gz",
    "template_gm.nii.gz",
    "tmap.nii.gz",
    "vbm.json",
    "zmap.nii.gz",
    "zmap_thresholded.nii.gz",
]


def test_parser_choices_match_the_stats_layer():
    assert stats_vbm.JACOBIAN_CONVENTIONS == vbm.JACOBIAN_CONVENTIONS
    assert stats_vbm.HEIGHT_CONTROLS == vbm.HEIGHT_CONTROLS


@pytest.mark.shared
def test_vbm_on_the_aomic_subset(tmp_path, capsys):
    subset = require_shared("aomic", "derivatives", "vbm", "subset")
    participants = require_shared("aomic", "participants.tsv")
    out = tmp_path / "out"
    argv = ["stats", "vbm", "--gm-maps", *map(str, sorted(subset.glob("sub-*/sub-*_probseg.nii.gz")))]
    argv += ["--jacobians", *map(str, sorted(subset.glob("sub-*/sub-*_J.nii.gz")))]
    argv += ["--jacobian-convention", "fsl", "--participants", str(participants), "--design", "age + C(sex)"]
    argv += ["--contrast", "age", "--smoothing-fwhm", "3", "--mask-threshold", "0.05", "--height-control"]
    argv += ["fpr", "--alpha", "0.05", "--cluster-threshold", "50", "--output-dir", str(out)]
    assert main(argv) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    modulated = [
        f"modulated/sub-000{i}_space-GM226_label-GM_desc-modulated_probseg.nii.gz" for i in range(1, 6)
    ]
    assert written == sorted(OUTPUTS + modulated)
    err = capsys.readouterr().err
    assert err.startswith("vbm: 5 subjects, ")
    assert "fpr alpha=0.05: |z| > 1.960, clusters >= 50 voxels: " in err
    table = pd.read_csv(out / "clusters.tsv", sep="\t", dtype={"cluster_id": str})
    strongest = table.loc[table["peak_z"].abs().idxmax()]
    assert f"  cluster {strongest['cluster_id']}: peak z={strongest['peak_z']:.2f}" in err


def _derivatives(root: Path, n: int = 6) -> Path:
    rows = []
    rng = np.random.default_rng(1)
    for i in range(n):
        label = f"{i + 1:02d}"
        anat = root / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        data = (0.4 + rng.normal(0, 0.05, (10, 10, 10))).astype(np.float32)
        for desc in ("", "_desc-modulated"):
            name = f"sub-{label}_space-MNI152NLin2009aSym_label-GM{desc}_probseg.nii.gz"
            nb.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(str(anat / name))
        rows.append(
            (
                f"sub-{label}",
                20.0 + i,
                "FM"[i % 2],
                "n/a" if i == 0 else [22.0, 27.0, 21.0, 30.0, 24.0][i - 1],
            )
        )
    pd.DataFrame(rows, columns=["participant_id", "age", "sex", "BMI"]).to_csv(
        root / "participants.tsv", sep="\t", index=False
    )
    return root


def test_vbm_from_smriflow_derivatives_with_a_missing_covariate(tmp_path, capsys):
    root = _derivatives(tmp_path / "deriv")
    argv = ["stats", "vbm", "--derivatives", str(root), "--participants", str(root / "participants.tsv")]
    argv += ["--design", "age + BMI + C(sex)", "--contrast", "sex", "--missing", "drop"]
    argv += ["--height-control", "fdr", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("vbm: 5 subjects, dropped sub-01, 1000 mask voxels, contrast 'sex', fdr alpha=0.05")
    design = pd.read_csv(tmp_path / "out" / "design_matrix.tsv", sep="\t")
    assert design["participant_id"].tolist() == [f"sub-0{i}" for i in range(2, 7)]
    assert (
        tmp_path
        / "out"
        / "modulated"
        / "sub-02_space-MNI152NLin2009aSym_label-GM_desc-modulated_probseg.nii.gz"
    ).is_file()


@pytest.fixture
def maps(tmp_path):
    root = _derivatives(tmp_path / "deriv", n=3)
    gms = sorted(str(p) for p in root.glob("sub-*/anat/*GM_probseg.nii.gz"))
    return root, gms


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_gm_maps_need_jacobians_and_a_convention(maps, tmp_path, capsys):
    root, gms = maps
    base = ["stats", "vbm", "--participants", str(root / "participants.tsv"), "--design", "age"]
    base += ["--contrast", "age", "--output-dir", str(tmp_path / "out")]
    code, err = _run([*base, "--gm-maps", *gms], capsys)
    assert (code, err) == (
        2,
        "smriflow stats vbm: --gm-maps needs --jacobians and --jacobian-convention (fsl or ants)\n",
    )
    code, err = _run(
        [*base, "--gm-maps", *gms, "--jacobians", *gms[:2], "--jacobian-convention", "ants"], capsys
    )
    assert (code, err) == (2, f"smriflow stats vbm: {gms[2]}: sub-03 has a GM map but no Jacobian\n")
    code, err = _run([*base, "--derivatives", str(root), "--gm-maps", *gms], capsys)
    assert code == 2 and "argument --gm-maps: not allowed with argument --derivatives" in err
    code, err = _run([*base, "--derivatives", str(root), "--jacobian-convention", "fsl"], capsys)
    assert code == 2 and err.startswith(
        "smriflow stats vbm: --jacobians/--jacobian-convention go with --gm-maps"
    )
    assert not (tmp_path / "out").exists()


def test_bad_values_are_one_line_usage_errors(maps, tmp_path, capsys):
    root, gms = maps
    tsv = str(root / "participants.tsv")
    base = ["stats", "vbm", "--derivatives", str(root), "--participants", tsv, "--output-dir", str(tmp_path)]
    code, err = _run([*base, "--design", "age + C(sexe)", "--contrast", "age"], capsys)
    assert (code, err) == (
        2,
        f"smriflow stats vbm: {tsv}: unknown column 'sexe'. Did you mean 'sex'? Available: BMI, age, sex\n",
    )
    code, err = _run([*base, "--design", "age", "--contrast", "age", "--alpha", "0"], capsys)
    assert code == 2 and "argument --alpha: must be between 0 and 1 (exclusive); got 0" in err
    code, err = _run([*base, "--design", "age", "--contrast", "age", "--cluster-threshold", "-1"], capsys)
    assert code == 2 and "argument --cluster-threshold: must be >= 0; got -1" in err
    code, err = _run([*base, "--design", "age", "--contrast", "age", "--height-control", "fwe"], capsys)
    assert code == 2 and "argument --height-control: invalid choice: 'fwe'" in err
    odd = root / "sub-04" / "anat" / "sub-04_space-MNI152NLin2009aSym_label-GM_desc-modulated_probseg.nii.gz"
    odd.parent.mkdir(parents=True)
    nb.Nifti1Image(np.ones((10, 10, 11), np.float32), np.eye(4)).to_filename(str(odd))
    first = (
        root / "sub-01" / "anat" / "sub-01_space-MNI152NLin2009aSym_label-GM_desc-modulated_probseg.nii.gz"
    )
    code, err = _run([*base, "--design", "age", "--contrast", "age"], capsys)
    assert (code, err) == (
        2,
        f"smriflow stats vbm: {odd}: shape (10, 10, 11) differs from {first} (shape (10, 10, 10)); "
        "every map must be on the same grid\n",
    )


def test_smriflow_run_vbm_equals_the_command(tmp_path, monkeypatch, capsys):
    """The group workflow (relative paths, run from another folder) writes what `stats vbm` writes."""
    _derivatives(tmp_path / "deriv")
    monkeypatch.chdir(tmp_path)
    options = ["--design", "age + C(sex)", "--contrast", "age", "--smoothing-fwhm", "2"]
    argv = ["stats", "vbm", "--derivatives", "deriv", "--participants", "deriv/participants.tsv", *options]
    assert main([*argv, "--missing", "drop", "--output-dir", "by_command"]) == 0
    argv = ["run", "vbm", "--output-dir", "by_workflow", "--work-dir", "work", "--set", "derivatives=deriv"]
    argv += ["--set", "participants=deriv/participants.tsv", "--set", "design=age + C(sex)", "--set"]
    argv += ["contrast=age", "--set", "smoothing_fwhm=2", "--set", "missing=drop"]
    assert main(argv) == 0, capsys.readouterr().err
    command = sorted(p.relative_to(tmp_path / "by_command") for p in (tmp_path / "by_command").rglob("*.*"))
    assert len(command) == len(OUTPUTS) + 6
    for rel in command:
        produced = (tmp_path / "by_workflow" / "vbm" / rel).read_bytes()
        if rel.name == "vbm.json":  # the inputs are recorded as given: relative here, absolute there
            continue
        assert produced == (tmp_path / "by_command" / rel).read_bytes(), rel
