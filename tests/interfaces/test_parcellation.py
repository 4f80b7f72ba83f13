"""AtlasCoordinates, WarpAtlas, ROIVolumes and SubjectSummary run as nipype interfaces."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nipype.interfaces.base import Undefined

from smriflow.data.atlases import atlas_labels
from smriflow.interfaces import parcellation as module
from smriflow.interfaces.parcellation import AtlasCoordinates, ROIVolumes, SubjectSummary, WarpAtlas


@pytest.fixture
def atlas_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("SMRIFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))


def _run(iface, cwd: Path):
    cwd.mkdir(parents=True, exist_ok=True)
    return iface.run(cwd=str(cwd)).outputs


def _identity(tmp_path: Path) -> Path:
    ants = pytest.importorskip("ants")
    path = tmp_path / "identity.mat"
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform", dimension=3), str(path))
    return path


@pytest.fixture
def native_grid(tmp_path) -> Path:
    """A 3 mm LIA grid over MNI space (stands for a native T1w already aligned to the template)."""
    shape = (62, 60, 74)
    affine = np.array([[-3.0, 0, 0, 92.0], [0, 0, 3.0, -120.0], [0, -3.0, 0, 100.0], [0, 0, 0, 1]])
    path = tmp_path / "sub-01_T1w.nii.gz"
    nb.Nifti1Image(np.zeros(shape, np.float32), affine).to_filename(path)
    return path


def test_public_interfaces_and_registry():
    from smriflow.engine.registry import interface_registry

    assert sorted(module.__all__) == ["AtlasCoordinates", "ROIVolumes", "SubjectSummary", "WarpAtlas"]
    registry = interface_registry()
    for name in module.__all__:
        assert registry[name] is getattr(module, name)


@pytest.mark.ants
@pytest.mark.parametrize(
    ("atlas", "interpolation"),
    [("aal", "genericLabel"), ("desikan_killiany", "genericLabel"), ("desikankilliany", "nearestNeighbor")],
)
def test_warp_atlas_gives_only_atlas_labels_on_the_native_grid(
    atlas, interpolation, atlas_cache, native_grid, tmp_path
):
    iface = WarpAtlas(
        atlas=atlas,
        reference_image=str(native_grid),
        transforms=[str(_identity(tmp_path))],
        interpolation=interpolation,
    )
    out = _run(iface, tmp_path / "warp")
    label = atlas.replace("_", "")  # BIDS label: an underscore would split the entity
    assert Path(out.out_dseg).name == f"atlas-{label}_dseg.nii.gz"
    assert Path(out.out_labels).name == f"atlas-{label}_dseg.tsv"
    img = nb.load(out.out_dseg)
    ref = nb.load(native_grid)
    assert img.shape == ref.shape
    np.testing.assert_allclose(img.affine, ref.affine)
    data = np.asarray(img.dataobj)
    assert np.issubdtype(data.dtype, np.integer)
    labels = set(atlas_labels(atlas)["label"].tolist())
    present = set(np.unique(data).tolist()) - {0}
    assert present <= labels
    assert len(present) > 0.8 * len(labels)  # a 3 mm grid keeps most regions
    table = pd.read_csv(out.out_labels, sep="\t")
    assert list(table.columns) == ["index", "name"]
    assert set(table["index"]) == labels


@pytest.mark.ants
def test_warp_atlas_switched_off_then_its_thickness_consumer_runs_without_it(
    atlas_cache, native_grid, tmp_path
):
    """``--set thickness=false``: the atlas warps of cortical_thickness do nothing, nor does the thickness."""
    from nipype.pipeline import engine as pe

    from smriflow.interfaces.thickness import CorticalThickness

    tpm = str(native_grid)
    warp = pe.Node(
        WarpAtlas(
            atlas="desikan_killiany",
            reference_image=tpm,
            transforms=[str(_identity(tmp_path))],
            enabled=False,
        ),
        name="warp_dk",
    )
    thickness = pe.Node(CorticalThickness(in_tpms=[tpm, tpm, tpm], enabled=False), name="thickness")
    wf = pe.Workflow(name="off", base_dir=str(tmp_path / "work"))
    wf.connect(warp, "out_dseg", thickness, "dk_dseg")
    done = {node.name: node for node in wf.run().nodes()}
    assert done["warp_dk"].result.outputs.get() == {"out_dseg": Undefined, "out_labels": Undefined}
    assert not list((tmp_path / "work").rglob("*_dseg.nii.gz"))  # nothing was warped
    assert all(v is Undefined for v in done["thickness"].result.outputs.get().values())
    # switched on, the thickness still needs its atlas (the check is skipped only when off)
    with pytest.raises(ValueError, match="dk_dseg"):
        CorticalThickness(in_tpms=[tpm, tpm, tpm]).run(cwd=str(tmp_path))


def _shifted(tmp_path: Path) -> Path:
    """A template -> native affine that is not the identity (rotation, scaling, sub-voxel shift)."""
    ants = pytest.importorskip("ants")
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    # a rotation about an oblique axis: no axis of the grid keeps landing half-way between two atlas voxels
    # (an exact tie of the label vote, which ITK's own rounding of the point breaks either way)
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    angle = np.deg2rad(7.0)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    transform.set_parameters(np.concatenate([(rotation * 1.04).ravel(), [1.37, -2.21, 0.73]]))
    path = tmp_path / "shifted.mat"
    ants.write_transform(transform, str(path))
    return path


@pytest.mark.ants
@pytest.mark.parametrize("interpolation", ["genericLabel", "nearestNeighbor"])
def test_one_pass_of_the_transform_gives_the_labels_of_one_warp_per_atlas(
    interpolation, atlas_cache, native_grid, tmp_path
):
    xfm = str(_shifted(tmp_path))
    atlases = ["aal", "desikan_killiany"]
    coords = _run(
        AtlasCoordinates(atlases=atlases, reference_image=str(native_grid), transforms=[xfm]),
        tmp_path / "coords",
    ).out_coords
    for atlas in atlases:
        common = {"atlas": atlas, "reference_image": str(native_grid), "interpolation": interpolation}
        one_pass = _run(WarpAtlas(coordinates=coords, **common), tmp_path / f"{atlas}_one_pass").out_dseg
        own = _run(WarpAtlas(transforms=[xfm], **common), tmp_path / f"{atlas}_own").out_dseg
        a, b = nb.load(one_pass), nb.load(own)
        assert a.get_data_dtype() == b.get_data_dtype()
        np.testing.assert_allclose(a.affine, b.affine)
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), atlas


def test_warp_atlas_needs_transforms_or_coordinates(atlas_cache, native_grid, tmp_path):
    with pytest.raises(
        ValueError, match=r"^WarpAtlas needs 'transforms' or 'coordinates'; neither was given\.$"
    ):
        _run(WarpAtlas(atlas="aal", reference_image=str(native_grid)), tmp_path)


def test_atlas_coordinates_switched_off(native_grid, tmp_path):
    iface = AtlasCoordinates(
        atlases=["aal"], reference_image=str(native_grid), transforms=[str(native_grid)], enabled=False
    )
    out = _run(iface, tmp_path)
    assert out.out_coords is Undefined and not list(tmp_path.glob("*.np[yz]"))


def test_warp_atlas_unknown_name(atlas_cache, native_grid, tmp_path):
    iface = WarpAtlas(atlas="aal3", reference_image=str(native_grid), transforms=[str(native_grid)])
    with pytest.raises(ValueError, match=r"^Atlas 'aal3' is not available\. Available atlases: aal, aicha, "):
        _run(iface, tmp_path)


@pytest.mark.parametrize("zoom", [1.0, 2.0])
def test_roi_volumes_tsv(tmp_path, zoom):
    labels = atlas_labels("aal")
    first, second = labels["label"].iloc[:2]
    data = np.zeros((8, 8, 8), np.uint16)
    data[:2, :2, :2] = first  # 8 voxels
    data[4:, 4:, 4:] = second  # 64 voxels
    affine = np.diag([zoom, zoom, zoom, 1.0])
    dseg, gm = tmp_path / "dseg.nii.gz", tmp_path / "gm.nii.gz"
    nb.Nifti1Image(data, affine).to_filename(dseg)
    nb.Nifti1Image(np.full(data.shape, 0.25, np.float32), affine).to_filename(gm)

    out = _run(ROIVolumes(in_dseg=str(dseg), atlas="aal", in_gm=str(gm)), tmp_path / "a")
    assert Path(out.out_tsv).name == "atlas-aal_volumes.tsv"
    table = pd.read_csv(out.out_tsv, sep="\t")
    assert list(table.columns) == ["label", "name", "voxels", "volume_mm3", "gm_volume_mm3"]
    assert len(table) == len(labels)  # every region, also the empty ones
    rows = table.set_index("label")
    assert rows.loc[first, "voxels"] == 8
    assert rows.loc[first, "volume_mm3"] == pytest.approx(8 * zoom**3)
    assert rows.loc[second, "volume_mm3"] == pytest.approx(64 * zoom**3)
    assert rows.loc[second, "gm_volume_mm3"] == pytest.approx(16 * zoom**3)
    assert rows["volume_mm3"].sum() == pytest.approx(72 * zoom**3)

    no_gm = pd.read_csv(_run(ROIVolumes(in_dseg=str(dseg), atlas="aal"), tmp_path / "b").out_tsv, sep="\t")
    assert no_gm["gm_volume_mm3"].isna().all()  # written as n/a


def test_subject_summary(tmp_path):
    shape, affine = (6, 6, 6), np.diag([1.5, 1.5, 1.5, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[1:5, 1:5, 1:5] = 1
    files = []
    for name, value in (("gm", 0.5), ("wm", 0.3), ("csf", 0.2), ("mask", None)):
        data = mask if value is None else (mask * value).astype(np.float32)
        files.append(tmp_path / f"{name}.nii.gz")
        nb.Nifti1Image(data, affine).to_filename(files[-1])
    out = _run(SubjectSummary(in_tpms=[str(f) for f in files[:3]], in_mask=str(files[3])), tmp_path / "s")
    values = json.loads(Path(out.out_json).read_text())
    voxel = 1.5**3
    assert values["tiv_mm3"] == pytest.approx(64 * voxel, abs=1e-3)
    assert values["gm_volume_mm3"] == pytest.approx(32 * voxel, abs=1e-3)
    assert values["brain_volume_mm3"] == pytest.approx(0.8 * 64 * voxel, abs=1e-3)
    table = pd.read_csv(out.out_tsv, sep="\t")
    assert len(table) == 1
    assert table.iloc[0].to_dict() == pytest.approx(values, abs=1e-3)
    with pytest.raises(
        ValueError, match=r"^'in_tpms' must list 3 files \(GM, WM, CSF\)\. 2 were provided\.$"
    ):
        _run(SubjectSummary(in_tpms=[str(f) for f in files[:2]], in_mask=str(files[3])), tmp_path / "t")


@pytest.mark.ants
def test_coordinates_given_are_checked_and_passed_on(atlas_cache, native_grid, tmp_path):
    """A second AtlasCoordinates reuses coordinates that cover its atlases, and refuses those that do not."""
    xfm = str(_shifted(tmp_path))
    common = {"reference_image": str(native_grid), "transforms": [xfm]}
    shared = _run(
        AtlasCoordinates(atlases=["aal"], also_cover=["desikan_killiany"], **common), tmp_path / "shared"
    ).out_coords
    reuse = AtlasCoordinates(atlases=["desikan_killiany"], in_coords=shared, **common)
    reused = _run(reuse, tmp_path / "reused")
    assert reused.out_coords == shared
    narrow = _run(AtlasCoordinates(atlases=["desikan_killiany"], **common), tmp_path / "narrow").out_coords
    # Harvard-Oxford's grid reaches 7 mm further back than Desikan-Killiany's (3 mm beyond its box's margin)
    refused = r"^atlas 'harvard_oxford': its template grid reaches outside the box"
    with pytest.raises(ValueError, match=refused):
        _run(AtlasCoordinates(atlases=["harvard_oxford"], in_coords=narrow, **common), tmp_path / "refused")
    warp = WarpAtlas(atlas="harvard_oxford", coordinates=narrow, reference_image=str(native_grid))
    with pytest.raises(ValueError, match=refused):
        _run(warp, tmp_path)
