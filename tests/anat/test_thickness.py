"""Cortical thickness: known thickness recovered on synthetic shells (partial volume, touching sulcal
banks), atlas context, FreeSurfer-compatible regional tables read by ``stats roi-table`` / ``stats roi``."""

from __future__ import annotations

import contextlib
import io

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from smriflow.anat.thickness import (
    area_weights,
    cortex_context,
    cortical_thickness,
    regional_thickness,
    relabel_cortex,
    subject_thickness,
    thickness_image,
)
from smriflow.cli.main import main
from smriflow.stats.freesurfer import write_wide_table
from smriflow.stats.tables import read_roi_tables

SS = 4  # supersampling of the partial-volume phantoms


def _reduce(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Partial-volume fraction of each 1 mm voxel from a mask supersampled SS times per axis."""
    split = [v for n in shape for v in (n, SS)]
    return mask.astype(np.float32).reshape(split).mean(axis=tuple(range(1, 2 * len(shape), 2)))


def spheres(thickness: float, radius: float = 12.0, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A WM ball inside a GM shell of the given thickness, as partial-volume memberships (1 mm voxels)."""
    g = (np.arange(n * SS) + 0.5) / SS - n / 2
    x, y, z = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    r = np.sqrt(x**2 + y**2 + z**2)
    return _reduce((r > radius) & (r <= radius + thickness), (n,) * 3), _reduce(r <= radius, (n,) * 3)


def folded(thickness: float, width: float = 6.0) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """A WM base with five round-capped WM gyri; GM is everything within ``thickness`` of WM.

    Three sulci are exactly ``2 * thickness`` wide, so their GM banks touch with no CSF between them; one is
    ``3 * thickness`` wide (open). Returns GM, WM (extruded over 4 voxels) and the x-ranges (mm) of the
    touching sulci.
    """
    gaps = [2 * thickness, 2 * thickness, 3 * thickness, 2 * thickness]
    nx, nz = int(48 + 5 * width + sum(gaps)) // 2 * 2, 56
    xs, zs = (np.arange(nx * SS) + 0.5) / SS, (np.arange(nz * SS) + 0.5) / SS
    x, z = xs[:, None], zs[None, :]
    wm = np.broadcast_to(z < 12, (nx * SS, nz * SS)).copy()
    left, touching = 8.0, []
    for gap in [0.0, *gaps]:
        if gap == 2 * thickness:
            touching.append((left, left + gap))
        left += gap
        wm |= (x >= left) & (x <= left + width) & (z <= 38)
        wm |= (x - left - width / 2) ** 2 + (z - 38) ** 2 <= (width / 2) ** 2
        left += width
    grey = ~wm & (ndimage.distance_transform_edt(~wm, sampling=1 / SS) <= thickness)
    gm, white = _reduce(grey, (nx, nz)), _reduce(wm, (nx, nz))
    return np.repeat(gm[:, None], 4, axis=1), np.repeat(white[:, None], 4, axis=1), touching


def _band(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    return (wm < 0.5) & (gm + wm > 0.5)


@pytest.mark.parametrize("truth", [2.5, 4.0])
def test_spheres_recover_the_shell_thickness(truth):
    gm, wm = spheres(truth)
    thick = cortical_thickness(gm, wm)
    band = _band(gm, wm)
    assert np.all(thick[~band] == 0)  # zero outside the GM band
    assert np.all(thick[band] > 0)
    assert abs(np.median(thick[band]) - truth) <= 0.2


@pytest.mark.parametrize("truth", [2.5, 4.0])
def test_folded_cortex_with_touching_banks(truth):
    gm, wm, touching = folded(truth)
    thick = cortical_thickness(gm, wm)
    band = _band(gm, wm)
    assert np.all(thick[~band] == 0) and np.all(thick[band] > 0)
    assert abs(np.median(thick[band]) - truth) <= 0.2
    # inside the closed sulci (between the gyri, above the WM base, below the caps)
    centres = np.arange(gm.shape[0]) + 0.5
    in_sulci = np.zeros(gm.shape, dtype=bool)
    for lo, hi in touching:
        in_sulci[(centres > lo) & (centres < hi), :, 14 + int(truth) : 36] = True
    sulcal = thick[band & in_sulci]
    assert len(sulcal) > 50 and abs(np.median(sulcal) - truth) <= 0.2
    # without the sulcal skeleton, the touching banks read as one thick sheet
    blind = cortical_thickness(gm, wm, min_sulcal_gap=1e6, max_thickness=50.0)
    assert np.median(blind[band & in_sulci]) > truth + 1.0


def test_voxel_size_and_cap():
    gm, wm = spheres(2.5)
    thick = cortical_thickness(gm, wm, zooms=(2.0, 2.0, 2.0))  # the same shell, twice as large
    assert abs(np.median(thick[_band(gm, wm)]) - 5.0) <= 0.4
    capped = cortical_thickness(gm, wm, zooms=(2.0, 2.0, 2.0), max_thickness=4.0)
    assert capped.max() == pytest.approx(4.0)


def test_masks_restrict_and_reassign():
    gm, wm = spheres(2.5)
    band = _band(gm, wm)
    half = np.zeros(gm.shape, dtype=bool)
    half[:20] = True
    thick = cortical_thickness(gm, wm, cortex=half)
    assert np.all(thick[~half] == 0) and np.all(thick[band & half] > 0)
    # the whole shell counted as white matter (deep GM) or as outside: no cortex left
    assert not cortical_thickness(gm, wm, inner=band).any()
    assert not cortical_thickness(gm, wm, outer=band).any()
    with pytest.raises(ValueError, match="same shape|one shape"):
        cortical_thickness(gm, wm[:-1])


LABELS = pd.DataFrame(
    {
        "label": [12, 17, 1001, 1005, 2001, 2005],
        "name": [
            "Left-Putamen",
            "Left-Hippocampus",
            "ctx-lh-bankssts",
            "ctx-lh-cuneus",
            "ctx-rh-bankssts",
            "ctx-rh-cuneus",
        ],
    }
)


def test_cortex_context_takes_the_nearest_structure():
    atlas = np.zeros((16, 3, 3), dtype=np.int32)
    atlas[0], atlas[5], atlas[10], atlas[15] = 1001, 12, 17, 2005  # cortex, putamen, hippocampus, cortex
    gm = np.ones(atlas.shape, dtype=np.float32)
    gm[7] = 0  # no grey matter there: no label
    region, inner, outer = cortex_context(atlas, LABELS, gm)
    assert region[:, 1, 1].tolist() == [1001] * 3 + [0] * 10 + [2005] * 3
    assert inner[:, 1, 1].tolist() == [False] * 3 + [True] * 4 + [False] * 9
    assert outer[:, 1, 1].tolist() == [False] * 8 + [True] * 5 + [False] * 3
    assert not (region[7].any() or inner[7].any() or outer[7].any())


def _maps(values: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    region = np.zeros((4, 4, 4), dtype=np.int32)
    thick = np.zeros((4, 4, 4), dtype=np.float32)
    for i, (label, value) in enumerate(values.items()):
        region[i, :, :2] = label
        thick[i, :, :2] = value
        thick[i, 0, 0] = value + 0.4  # the mean, not the mode, is reported
    return thick, region


def test_regional_tables_have_freesurfer_names():
    thick, region = _maps({1001: 2.0, 1005: 3.0, 2001: 2.5})
    tables = regional_thickness(thick, region, LABELS, "desikan_killiany", "sub-01")
    lh, rh = tables["lh"], tables["rh"]
    assert lh.index.name == "lh.aparc.thickness" and list(lh.index) == ["sub-01"]
    assert list(lh.columns) == ["lh_bankssts_thickness", "lh_cuneus_thickness", "lh_MeanThickness_thickness"]
    assert lh.iloc[0].tolist() == pytest.approx([2.05, 3.05, 2.55])
    assert rh.loc["sub-01", "rh_bankssts_thickness"] == pytest.approx(2.55)
    assert np.isnan(rh.loc["sub-01", "rh_cuneus_thickness"])  # no voxel
    destrieux = pd.DataFrame(
        {"label": [11101, 11100], "name": ["ctx_lh_G_and_S_frontomargin", "ctx_lh_Unknown"]}
    )
    thick, region = _maps({11101: 2.0})
    table = regional_thickness(thick, region, destrieux, "destrieux", "sub-01")["lh"]
    assert table.index.name == "lh.aparc.a2009s.thickness"
    assert list(table.columns) == ["lh_G&S_frontomargin_thickness", "lh_MeanThickness_thickness"]
    with pytest.raises(ValueError, match="FreeSurfer cortical atlas"):
        regional_thickness(thick, region, destrieux, "aal", "sub-01")


def _two_slabs(voxel: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Two 30 x 30 mm patches of flat cortex, 2 and 4 mm thick: bankssts (x < 30 mm) and cuneus (lh)."""
    n = int(round(30 / voxel))
    thick = np.zeros((2 * n, n, int(round(8 / voxel))), np.float32)
    layers = np.arange(thick.shape[2]) * voxel
    thick[:n, :, layers < 2] = 2.0
    thick[n:, :, layers < 4] = 4.0
    region = np.where(thick > 0, 1001, 0).astype(np.int32)
    region[n:][thick[n:] > 0] = 1005
    return thick, region


@pytest.mark.parametrize("voxel", [1.0, 0.5])
def test_surface_weighted_means_count_each_patch_of_cortex_once(voxel):
    """FreeSurfer averages over its surface: two equal patches, 2 and 4 mm thick, have a mean of 3 mm.

    A plain mean over voxels counts the thick patch twice as much (its columns hold twice the voxels): 3.33.
    """
    thick, region = _two_slabs(voxel)
    zooms = (voxel,) * 3
    area = area_weights(thick, zooms)
    assert area.dtype == np.float32 and not area[thick == 0].any()
    n = region.shape[0] // 2
    # the weights add up to the surface: 900 mm² a patch; the step between them is blurred over ~sigma
    assert area.sum() == pytest.approx(1800.0, rel=0.02)
    for patch in (slice(0, n), slice(n, None)):
        assert area[patch].sum() == pytest.approx(900.0, rel=0.05)
    surface = regional_thickness(thick, region, LABELS, "desikan_killiany", "sub-01", area)["lh"].iloc[0]
    plain = regional_thickness(thick, region, LABELS, "desikan_killiany", "sub-01")["lh"].iloc[0]
    assert surface["lh_bankssts_thickness"] == pytest.approx(2.0, abs=1e-5)  # flat patches: their own value
    assert surface["lh_cuneus_thickness"] == pytest.approx(4.0, abs=1e-5)
    assert surface["lh_MeanThickness_thickness"] == pytest.approx(3.0, abs=0.04)
    assert plain["lh_MeanThickness_thickness"] == pytest.approx(10 / 3, abs=1e-5)
    one = np.where(region > 0, 1001, 0)  # one region over both patches: the same 3 mm
    assert regional_thickness(thick, one, LABELS, "desikan_killiany", "s", area)["lh"].iloc[
        0, 0
    ] == pytest.approx(3.0, abs=0.03)


def test_area_weights_errors():
    thick, region = _two_slabs()
    with pytest.raises(ValueError, match=r"^'sigma_mm' must be positive\. 0 was provided\.$"):
        area_weights(thick, (1, 1, 1), sigma_mm=0)
    with pytest.raises(
        ValueError, match=r"^'weights' \(2, 2, 2\) must be on the grid of 'thickness' \(60, 30, 8\)\.$"
    ):
        regional_thickness(thick, region, LABELS, "desikan_killiany", "s", np.ones((2, 2, 2)))


def test_relabel_keeps_the_cortex_and_its_hemispheres():
    """A second atlas's tables cover the same voxels: the same MeanThickness, and roi-table merges them."""
    thick, region = _maps({1001: 2.0, 1005: 3.0, 2001: 2.5, 2005: 2.2})
    destrieux = pd.DataFrame(
        {
            "label": [11101, 11102, 12101, 11100],
            "name": [
                "ctx_lh_G_and_S_frontomargin",
                "ctx_lh_S_central",
                "ctx_rh_G_and_S_frontomargin",
                "ctx_lh_Unknown",
            ],
        }
    )
    other = np.zeros(region.shape, dtype=np.int32)
    other[0, :, 2:], other[1, :, 2:], other[3, :, :] = 11101, 11102, 12101  # lh labels beside the cortex
    other[2, :, :] = 11100  # 'Unknown' is no region
    relabelled = relabel_cortex(region, LABELS, other, destrieux)
    assert np.array_equal(relabelled > 0, region > 0)
    assert set(np.unique(relabelled[region == 2001])) == {12101}  # rh voxels take only rh labels
    assert set(np.unique(relabelled[region == 1001])) == {11101} and set(
        np.unique(relabelled[region == 1005])
    ) == {11102}
    dk = regional_thickness(thick, region, LABELS, "desikan_killiany", "sub-01")
    a2009s = regional_thickness(thick, relabelled, destrieux, "destrieux", "sub-01")
    for hemi in ("lh", "rh"):
        key = f"{hemi}_MeanThickness_thickness"
        assert a2009s[hemi].loc["sub-01", key] == pytest.approx(dk[hemi].loc["sub-01", key], rel=1e-9)
    assert a2009s["lh"].loc["sub-01", "lh_S_central_thickness"] == pytest.approx(3.05)


def _run_cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def test_tables_round_trip_through_roi_table_and_roi(tmp_path):
    """Per-subject tables → ``stats roi-table`` → ``stats roi``: a planted age effect is recovered."""
    rng = np.random.default_rng(0)
    ages = rng.uniform(20, 80, 24)
    files = []
    for i, age in enumerate(ages):
        cuneus = 2.6 - 0.01 * (age - 50) + rng.normal(0, 0.03)
        noise = rng.normal(0, 0.05, 3)
        thick, region = _maps(
            {1001: 2.5 + noise[0], 1005: cuneus, 2001: 2.4 + noise[1], 2005: 2.2 + noise[2]}
        )
        for hemi, table in regional_thickness(
            thick, region, LABELS, "desikan_killiany", f"sub-{i:02d}"
        ).items():
            files.append(write_wide_table(table, tmp_path / f"sub-{i:02d}_hemi-{hemi}_thickness.tsv"))
    participants = tmp_path / "participants.tsv"
    pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(24)], "age": ages}).to_csv(
        participants, sep="\t", index=False
    )
    data = read_roi_tables(files)
    assert data.values.shape == (24, 4) and set(data.rois["atlas"]) == {"aparc"}
    assert list(data.covariates.columns) == ["lh_MeanThickness_thickness", "rh_MeanThickness_thickness"]
    code, err = _run_cli("stats", "roi-table", "--table", *files, "-o", tmp_path / "wide.tsv")
    assert code == 0, err
    wide = pd.read_csv(tmp_path / "wide.tsv", sep="\t")
    assert wide.columns[0] == "participant_id" and len(wide) == 24
    assert "lh_cuneus_thickness" in wide.columns and "rh_MeanThickness_thickness" in wide.columns
    code, err = _run_cli(
        "stats", "roi", "--table", *files, "--participants", participants, "--formula", "{roi} ~ age",
        "--predictor", "age", "--missing", "drop", "--correction", "bonferroni", "--no-figures",
        "--output-dir", tmp_path / "glm",
    )  # fmt: skip
    assert code == 0, err
    glm = pd.read_csv(tmp_path / "glm" / "roi_glm.tsv", sep="\t", keep_default_na=False)
    cuneus = glm[(glm.roi == "cuneus") & (glm.hemi == "lh")].iloc[0]
    # the map's mean is the planted value + 0.4/8 (one voxel of eight is 0.4 thicker): the slope is unchanged
    assert cuneus.coef == pytest.approx(-0.01, abs=0.002) and cuneus.p_corrected < 0.01
    assert (glm[glm.roi != "cuneus"].p_corrected > 0.05).all()  # no effect planted there


def test_thickness_image_with_an_atlas(tmp_path):
    gm, wm = spheres(2.5)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    atlas = np.zeros(gm.shape, dtype=np.int32)
    atlas[_band(gm, wm) & (np.arange(40)[:, None, None] < 20)] = 1001
    atlas[_band(gm, wm) & (np.arange(40)[:, None, None] >= 20)] = 2001
    atlas[18:22, 18:22, 18:22] = 12  # putamen in the middle of the "WM"
    images = [nb.Nifti1Image(a, affine) for a in (gm, wm, atlas)]
    thick, region = thickness_image(*images, labels=LABELS)
    values, labels = thick.get_fdata(), np.asanyarray(region.dataobj)
    assert np.all((values > 0) == (labels > 0))
    assert set(np.unique(labels)) == {0, 1001, 2001}
    tables = regional_thickness(values, labels, LABELS, "desikan_killiany", "sub-01")
    assert tables["lh"].loc["sub-01", "lh_bankssts_thickness"] == pytest.approx(2.5, abs=0.2)
    with pytest.raises(ValueError, match="labels"):
        thickness_image(*images)


def test_subject_thickness_gives_maps_tables_and_record():
    """One call makes the map, the DK region map, DK and Destrieux tables of equal means, and the IQMs."""
    gm, wm = spheres(2.5)
    affine = np.eye(4)
    left = np.arange(40)[:, None, None] < 20
    dk = np.where(_band(gm, wm), np.where(left, 1001, 2001), 0).astype(np.int32)
    destrieux = np.where(gm + wm > 0.2, np.where(left, 11101, 12101), 0).astype(np.int32)
    images = {
        name: nb.Nifti1Image(a, affine) for name, a in (("desikan_killiany", dk), ("destrieux", destrieux))
    }
    thick, region, tables, record = subject_thickness(
        nb.Nifti1Image(gm, affine), nb.Nifti1Image(wm, affine), images, "sub-01"
    )
    values = thick.get_fdata()
    assert np.array_equal(values > 0, np.asanyarray(region.dataobj) > 0)
    assert set(tables) == {"desikan_killiany", "destrieux"}
    assert tables["destrieux"]["lh"].index.name == "lh.aparc.a2009s.thickness"
    for hemi in ("lh", "rh"):
        key = f"{hemi}_MeanThickness_thickness"
        mean = tables["desikan_killiany"][hemi].loc["sub-01", key]
        assert tables["destrieux"][hemi].loc["sub-01", key] == pytest.approx(mean, rel=1e-9)
        assert record["iqms"][f"thickness_mean_{hemi}"] == pytest.approx(mean) == pytest.approx(2.5, abs=0.25)
    assert record["regions"]["lh"]["bankssts"] == pytest.approx(record["mean_mm"]["lh"])
    inside = values[values > 0]
    assert record["voxels"] == inside.size
    assert record["gm_wm_boundary"] == "memberships (WM = 0.5)"  # no T1w given
    assert record["iqms"]["thickness_frac_above"] == pytest.approx(np.mean(inside > 4.5))
    assert 0 <= record["iqms"]["thickness_frac_below"] < 0.2  # the shell is 2.5 mm: few values under 1 mm
    with pytest.raises(ValueError, match="desikan_killiany"):
        subject_thickness(nb.Nifti1Image(gm, affine), nb.Nifti1Image(wm, affine), {}, "sub-01")
