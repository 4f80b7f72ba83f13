"""SpatialNormalization, ApplyTransforms and ModulateJacobian run as nipype interfaces.

(Named ``test_registration_interfaces.py``: ``tests/`` has no ``__init__.py`` files, so a second
``test_registration.py`` next to ``tests/anat/test_spatial_normalization.py`` would break collection.)
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _anat_data import block_mean
from scipy import ndimage

from smriflow.interfaces import spatial_normalization as module
from smriflow.interfaces.spatial_normalization import ApplyTransforms, ModulateJacobian, SpatialNormalization

pytestmark = pytest.mark.ants
ants = pytest.importorskip("ants")

SCALE = 1.2


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """A 4 mm copy of the default template and a subject = template scaled by 1.2 on a 3 mm LIA grid."""
    from smriflow.data.templates import get_template

    out = tmp_path_factory.mktemp("pair")
    paths: dict[str, Path] = {}
    shape = (80, 80, 90)
    sub_aff = np.array([[-3.0, 0, 0, 0], [0, 0, 3.0, 0], [0, -3.0, 0, 0], [0, 0, 0, 1]])
    sub_aff[:3, 3] = -(sub_aff[:3, :3] @ (np.array(shape) - 1) / 2) + np.array([0.0, -18.0, 20.0])
    ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    ras_tpl = (ijk @ sub_aff[:3, :3].T + sub_aff[:3, 3]) / SCALE  # subject point -> template point
    for key, kwargs in (
        ("t1w", {}),
        ("mask", {"suffix": "mask"}),
        ("gm", {"suffix": "probseg", "label": "GM"}),
    ):
        img = nb.load(get_template(resolution=2, **kwargs))
        data, aff = block_mean(np.asarray(img.dataobj, dtype=np.float32), img.affine, 2)
        if key == "mask":
            data = (data > 0.5).astype(np.float32)
        paths[f"tpl_{key}"] = out / f"tpl_{key}.nii.gz"
        nb.Nifti1Image(data, aff).to_filename(paths[f"tpl_{key}"])
        src = (ras_tpl - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T
        sub = ndimage.map_coordinates(data, src.T, order=1, mode="constant").reshape(shape).astype(np.float32)
        paths[f"sub_{key}"] = out / f"sub_{key}.nii.gz"
        nb.Nifti1Image((sub > 0.5).astype(np.uint8) if key == "mask" else sub, sub_aff).to_filename(
            paths[f"sub_{key}"]
        )
    return paths


def _norm(pair, cwd: Path, **kwargs):
    iface = SpatialNormalization(
        in_file=str(pair["sub_t1w"]),
        in_mask=str(pair["sub_mask"]),
        template_image=str(pair["tpl_t1w"]),
        template_mask=str(pair["tpl_mask"]),
        profile="testing",
        **kwargs,
    )
    cwd.mkdir(parents=True, exist_ok=True)
    return iface.run(cwd=str(cwd)).outputs


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _data(path) -> np.ndarray:
    return np.asarray(nb.load(str(path)).dataobj)


def test_public_interfaces_and_registry():
    from smriflow.engine.registry import interface_registry

    assert sorted(module.__all__) == ["ApplyTransforms", "ModulateJacobian", "SpatialNormalization"]
    registry = interface_registry()
    for name in module.__all__:
        assert registry[name] is getattr(module, name)
    spec = SpatialNormalization().inputs
    assert spec.template == "MNI152NLin2009aSym"
    assert spec.profile == "fast"
    assert spec.trait("num_threads").nohash


def test_spatial_normalization_outputs_and_repeatability(pair, tmp_path):
    out = _norm(pair, tmp_path / "a")
    tpl = "MNI152NLin2009aSym"
    assert Path(out.out_file).name == f"space-{tpl}_desc-preproc_T1w.nii.gz"
    assert Path(out.out_xfm).name == f"from-T1w_to-{tpl}_mode-image_xfm.h5"
    assert Path(out.out_inv_xfm).name == f"from-{tpl}_to-T1w_mode-image_xfm.h5"
    assert Path(out.out_logjacobian).name == f"space-{tpl}_desc-logjacobian_T1w.nii.gz"
    assert out.out_template == str(pair["tpl_t1w"])
    assert all(Path(p).parent == tmp_path / "a" for p in (out.out_file, out.out_xfm, out.out_affine))
    jac = np.exp(_data(out.out_logjacobian))
    assert np.median(jac[_data(pair["tpl_mask"]) > 0]) == pytest.approx(SCALE**3, rel=0.05)

    again = _norm(pair, tmp_path / "b", init_affine=out.out_affine)  # SyN only, from the same affine
    assert Path(again.out_affine).read_bytes() == Path(out.out_affine).read_bytes()
    third = _norm(pair, tmp_path / "c")
    for name in ("out_file", "out_xfm", "out_inv_xfm", "out_affine", "out_logjacobian"):
        assert Path(getattr(third, name)).read_bytes() == Path(getattr(out, name)).read_bytes(), name


def test_spatial_normalization_template_lookup(pair, tmp_path, monkeypatch):
    """Without template_image, the template and its mask come from get_template at the profile's grid."""
    from smriflow.data import templates

    calls = []

    def fake_get_template(name, *, resolution, suffix="T1w", **kwargs):
        calls.append((name, resolution, suffix))
        return pair["tpl_mask"] if suffix == "mask" else pair["tpl_t1w"]

    monkeypatch.setattr(templates, "get_template", fake_get_template)
    iface = SpatialNormalization(
        in_file=str(pair["sub_t1w"]), in_mask=str(pair["sub_mask"]), profile="testing", template="tpl-Other"
    )
    out = iface.run(cwd=str(tmp_path)).outputs
    assert sorted(calls) == [("tpl-Other", 2, "T1w"), ("tpl-Other", 2, "mask")]
    assert Path(out.out_file).name == "space-Other_desc-preproc_T1w.nii.gz"
    calls.clear()
    iface.inputs.template_resolution = 1
    iface.run(cwd=str(tmp_path))
    assert {c[1] for c in calls} == {1}


def test_template_mask_needs_template_image(pair, tmp_path):
    iface = SpatialNormalization(in_file=str(pair["sub_t1w"]), template_mask=str(pair["tpl_mask"]))
    with pytest.raises(ValueError, match=r"^'template_mask' needs 'template_image'"):
        iface.run(cwd=str(tmp_path))


def test_apply_transforms_and_modulation(pair, tmp_path):
    norm = _norm(pair, tmp_path / "norm")
    copy = tmp_path / "other" / pair["sub_gm"].name
    copy.parent.mkdir()
    copy.write_bytes(pair["sub_gm"].read_bytes())  # same file name twice: outputs must not overwrite
    res = ApplyTransforms(
        in_files=[str(pair["sub_gm"]), str(copy)],
        reference_image=norm.out_template,
        transforms=[norm.out_xfm],
    ).run(cwd=str(_mkdir(tmp_path / "warp")))
    out_files = res.outputs.out_files
    assert len(out_files) == 2 and len(set(out_files)) == 2
    np.testing.assert_array_equal(_data(out_files[0]), _data(out_files[1]))
    assert nb.load(out_files[0]).shape == nb.load(pair["tpl_t1w"]).shape

    mod = ModulateJacobian(in_file=out_files[0], in_logjacobian=norm.out_logjacobian).run(
        cwd=str(_mkdir(tmp_path / "mod"))
    )
    modulated = _data(mod.outputs.out_file)
    np.testing.assert_allclose(
        modulated, _data(out_files[0]) * np.exp(_data(norm.out_logjacobian)), rtol=1e-5
    )
    voxel = lambda p: abs(np.linalg.det(nb.load(p).affine[:3, :3]))  # noqa: E731
    native = _data(pair["sub_gm"]).sum() * voxel(pair["sub_gm"])
    assert modulated.sum() * voxel(mod.outputs.out_file) == pytest.approx(native, rel=0.01)

    labels = ApplyTransforms(
        in_files=[str(pair["tpl_mask"])],
        reference_image=str(pair["sub_t1w"]),
        transforms=[norm.out_inv_xfm],
        interpolation="genericLabel",
    ).run(cwd=str(_mkdir(tmp_path / "labels")))
    assert labels.outputs.out_files == [labels.outputs.out_file]
    warped_mask = _data(labels.outputs.out_file)
    assert np.issubdtype(warped_mask.dtype, np.integer)
    assert set(np.unique(warped_mask).tolist()) <= {0, 1}
