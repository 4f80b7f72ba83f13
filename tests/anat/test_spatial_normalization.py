"""Registration to a template with antspyx: known scaling recovered, identity, repeatability, errors."""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _anat_data import block_mean
from scipy import ndimage

from smriflow.anat.modulation import modulate, volume_mm3
from smriflow.anat.spatial_normalization import (
    PRESETS,
    apply_transforms,
    get_preset,
    moments_initializer,
    normalize_to_template,
    transform_names,
)

pytestmark = pytest.mark.ants
ants = pytest.importorskip("ants")

SCALE = 1.2
SHIFT = np.array(
    [4.0, -6.0, 3.0]
)  # RAS mm: subject = template scaled by SCALE about the origin, then shifted
LIA3 = np.array([[-3.0, 0, 0, 0], [0, 0, 3.0, 0], [0, -3.0, 0, 0], [0, 0, 0, 1]])


def _resample(data: np.ndarray, affine: np.ndarray, shape, out_affine: np.ndarray, point_map) -> np.ndarray:
    """Sample ``data`` (on ``affine``) at ``point_map(p)`` for every RAS point p of the output grid."""
    ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    ras = point_map(ijk @ out_affine[:3, :3].T + out_affine[:3, 3])
    src = (ras - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    return ndimage.map_coordinates(data, src.T, order=1, mode="constant").reshape(shape).astype(np.float32)


@pytest.fixture(scope="module")
def scaled_pair(tmp_path_factory) -> dict[str, Path]:
    """A 4 mm template (nilearn's MNI152, skull-stripped) and a 'subject' that is the template scaled by 1.2
    in each axis and shifted, sampled on a 3 mm LIA grid, with GM probabilities and a brain mask."""
    from smriflow.data.templates import get_template

    out = tmp_path_factory.mktemp("scaled")
    tpl = {}
    for key, kwargs in (
        ("t1w", {}),
        ("mask", {"suffix": "mask"}),
        ("gm", {"suffix": "probseg", "label": "GM"}),
    ):
        img = nb.load(get_template(resolution=2, **kwargs))
        tpl[key], tpl_aff = block_mean(np.asarray(img.dataobj, dtype=np.float32), img.affine, 2)
    tpl["mask"] = (tpl["mask"] > 0.5).astype(np.float32)
    shape = (80, 80, 90)
    sub_aff = LIA3.copy()
    sub_aff[:3, 3] = -(sub_aff[:3, :3] @ (np.array(shape) - 1) / 2) + SHIFT + np.array([0.0, -18.0, 20.0])

    def to_template(ras):  # subject point -> template point (inverse of x -> SCALE * x + SHIFT)
        return (ras - SHIFT) / SCALE

    paths = {}
    for key in ("t1w", "mask", "gm"):
        paths[f"tpl_{key}"] = out / f"tpl_{key}.nii.gz"
        nb.Nifti1Image(tpl[key], tpl_aff).to_filename(paths[f"tpl_{key}"])
        sub = _resample(tpl[key], tpl_aff, shape, sub_aff, to_template)
        if key == "mask":
            sub = (sub > 0.5).astype(np.uint8)
        paths[f"sub_{key}"] = out / f"sub_{key}.nii.gz"
        nb.Nifti1Image(sub, sub_aff).to_filename(paths[f"sub_{key}"])
    return paths


@pytest.fixture(scope="module")
def normalized(scaled_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("run1")
    return normalize_to_template(
        scaled_pair["sub_t1w"],
        scaled_pair["tpl_t1w"],
        out,
        in_mask=scaled_pair["sub_mask"],
        template_mask=scaled_pair["tpl_mask"],
        preset="testing",
        space="TestTpl",
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def _data(path) -> np.ndarray:
    return np.asarray(nb.load(str(path)).dataobj)


def test_presets_and_messages():
    assert get_preset("fast").template_resolution == 2
    assert get_preset("precise").template_resolution == 1
    assert get_preset("fast", syn_iterations=(10,)).syn_iterations == (10,)
    assert set(PRESETS) == {"fast", "precise", "testing"}
    with pytest.raises(
        ValueError, match=r"^'preset' must be one of \['fast', 'precise', 'testing'\]\. 'quick' was"
    ):
        get_preset("quick")
    with pytest.raises(ValueError, match=r"^Unknown preset field\(s\) \['iterations'\]\. Fields: "):
        get_preset("fast", iterations=3)
    assert transform_names("MNI152NLin2009aSym") == (
        "from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5",
        "from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.h5",
    )


def test_moments_initializer_finds_the_scaling(scaled_pair, tmp_path):
    out = moments_initializer(
        ants.image_read(str(scaled_pair["tpl_mask"])),
        ants.image_read(str(scaled_pair["sub_mask"])),
        tmp_path / "m.mat",
    )
    tx = ants.read_transform(str(out))
    matrix = np.asarray(tx.parameters[:9]).reshape(3, 3)
    np.testing.assert_allclose(matrix, SCALE * np.eye(3), rtol=0.03)


def test_identity_transform_gives_identity(scaled_pair, tmp_path):
    identity = tmp_path / "identity.mat"
    ants.write_transform(
        ants.create_ants_transform(transform_type="AffineTransform", dimension=3), str(identity)
    )
    src = scaled_pair["sub_t1w"]
    out = apply_transforms(src, src, [identity], tmp_path / "same.nii.gz")
    np.testing.assert_allclose(_data(out), _data(src), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(nb.load(out).affine, nb.load(src).affine)
    assert _data(out).dtype == np.float32

    labels = np.zeros(nb.load(src).shape, np.int16)
    labels[20:40, 20:50, 30:60] = 7
    labels[45:60, 20:40, 30:60] = 300
    lab_path = tmp_path / "labels.nii.gz"
    nb.Nifti1Image(labels, nb.load(src).affine).to_filename(lab_path)
    for interpolation in ("genericLabel", "nearestNeighbor"):
        same = apply_transforms(
            lab_path, src, [identity], tmp_path / f"{interpolation}.nii.gz", interpolation=interpolation
        )
        assert np.issubdtype(_data(same).dtype, np.integer)
        np.testing.assert_array_equal(_data(same), labels)


def test_apply_transforms_errors(scaled_pair, tmp_path):
    src = scaled_pair["sub_t1w"]
    with pytest.raises(ValueError, match=r"^'interpolation' must be one of .*'cubic' was provided\.$"):
        apply_transforms(src, src, [src], tmp_path / "x.nii.gz", interpolation="cubic")
    with pytest.raises(
        ValueError, match=r"^'transforms' must list at least one transform file\. \[\] was provided\.$"
    ):
        apply_transforms(src, src, [], tmp_path / "x.nii.gz")
    with pytest.raises(
        FileNotFoundError, match=r"^'transforms' names a file that does not exist: .*nope\.h5$"
    ):
        apply_transforms(src, src, [tmp_path / "nope.h5"], tmp_path / "x.nii.gz")


def test_normalization_recovers_known_scaling(scaled_pair, normalized):
    fwd, inv = transform_names("TestTpl")
    assert normalized.forward_transform.name == fwd
    assert normalized.inverse_transform.name == inv
    assert normalized.warped.name == "space-TestTpl_desc-preproc_T1w.nii.gz"
    assert not (normalized.warped.parent / "_syn").exists()  # per-call ANTs folders are cleaned up
    tpl_mask = _data(scaled_pair["tpl_mask"]) > 0
    warped = nb.load(normalized.warped)
    np.testing.assert_allclose(warped.affine, nb.load(scaled_pair["tpl_t1w"]).affine)

    # Jacobian of template -> subject: 1.2³ inside the brain
    jac = np.exp(_data(normalized.log_jacobian))
    assert np.median(jac[tpl_mask]) == pytest.approx(SCALE**3, rel=0.05)

    # the subject brain lands on the template brain, and the template brain on the subject's
    sub_in_tpl = apply_transforms(
        scaled_pair["sub_mask"], scaled_pair["tpl_t1w"], [normalized.forward_transform],
        normalized.warped.parent / "mask_tpl.nii.gz", interpolation="genericLabel",
    )  # fmt: skip
    assert _dice(_data(sub_in_tpl) > 0, tpl_mask) > 0.93
    tpl_in_sub = apply_transforms(
        scaled_pair["tpl_mask"], scaled_pair["sub_t1w"], [normalized.inverse_transform],
        normalized.warped.parent / "mask_sub.nii.gz", interpolation="genericLabel",
    )  # fmt: skip
    assert _dice(_data(tpl_in_sub) > 0, _data(scaled_pair["sub_mask"]) > 0) > 0.93

    # modulation keeps the native GM volume (1 %)
    gm_tpl = apply_transforms(
        scaled_pair["sub_gm"], scaled_pair["tpl_t1w"], [normalized.forward_transform],
        normalized.warped.parent / "gm_tpl.nii.gz",
    )  # fmt: skip
    native = volume_mm3(scaled_pair["sub_gm"])
    assert volume_mm3(modulate(gm_tpl, normalized.log_jacobian)) == pytest.approx(native, rel=0.01)
    assert volume_mm3(scaled_pair["tpl_gm"]) == pytest.approx(native / SCALE**3, rel=0.02)


def test_log_jacobian_equals_that_of_ants_own_composition(scaled_pair, normalized, tmp_path):
    """The log-Jacobian is computed from the composite's affine and field (T = A o W): check it against
    ANTs composing the whole file into one displacement field on the template grid."""
    from smriflow.anat.modulation import displacement_jacobian

    fixed = ants.image_read(str(scaled_pair["tpl_t1w"]))
    field = ants.apply_transforms(
        fixed=fixed, moving=fixed, transformlist=[str(normalized.forward_transform)], compose=f"{tmp_path}/c_"
    )
    expected = displacement_jacobian(field)
    np.testing.assert_allclose(np.exp(_data(normalized.log_jacobian)), expected, rtol=1e-4)


def test_two_runs_are_bit_identical(scaled_pair, normalized, tmp_path):
    again = normalize_to_template(
        scaled_pair["sub_t1w"],
        scaled_pair["tpl_t1w"],
        tmp_path,
        in_mask=scaled_pair["sub_mask"],
        template_mask=scaled_pair["tpl_mask"],
        preset="testing",
        space="TestTpl",
    )
    for field in ("warped", "log_jacobian"):
        np.testing.assert_array_equal(_data(getattr(again, field)), _data(getattr(normalized, field)))
    for field in ("affine", "forward_transform", "inverse_transform", "warped", "log_jacobian"):
        assert getattr(again, field).read_bytes() == getattr(normalized, field).read_bytes(), field
    for xfm, ref in (("forward_transform", "tpl_t1w"), ("inverse_transform", "sub_t1w")):
        moving = scaled_pair["sub_gm"] if ref == "tpl_t1w" else scaled_pair["tpl_gm"]
        a = apply_transforms(moving, scaled_pair[ref], [getattr(again, xfm)], tmp_path / f"a_{xfm}.nii.gz")
        b = apply_transforms(
            moving, scaled_pair[ref], [getattr(normalized, xfm)], tmp_path / f"b_{xfm}.nii.gz"
        )
        np.testing.assert_array_equal(_data(a), _data(b))


def test_init_affine_skips_the_affine_stage(scaled_pair, normalized, tmp_path):
    result = normalize_to_template(
        scaled_pair["sub_t1w"],
        scaled_pair["tpl_t1w"],
        tmp_path,
        in_mask=scaled_pair["sub_mask"],
        template_mask=scaled_pair["tpl_mask"],
        init_affine=normalized.affine,
        preset="testing",
        space="TestTpl",
    )
    assert not (tmp_path / "init_moments.mat").exists()
    assert result.affine.read_bytes() == normalized.affine.read_bytes()
    jac = np.exp(_data(result.log_jacobian))
    assert np.median(jac[_data(scaled_pair["tpl_mask"]) > 0]) == pytest.approx(SCALE**3, rel=0.05)


def test_normalization_errors(scaled_pair, tmp_path):
    with pytest.raises(
        ValueError, match=r"^'init_affine' must be an ANTs affine transform file \(\.mat or \.txt\)\."
    ):
        normalize_to_template(
            scaled_pair["sub_t1w"],
            scaled_pair["tpl_t1w"],
            tmp_path,
            init_affine=tmp_path / "x.h5",
            preset="testing",
        )
    empty = tmp_path / "empty.nii.gz"
    ref = nb.load(scaled_pair["sub_mask"])
    nb.Nifti1Image(np.zeros(ref.shape, np.uint8), ref.affine).to_filename(empty)
    with pytest.raises(ValueError, match=r"^The subject brain mask is empty"):
        normalize_to_template(scaled_pair["sub_t1w"], scaled_pair["tpl_t1w"], tmp_path, in_mask=empty)
    small = tmp_path / "small.nii.gz"
    nb.Nifti1Image(np.ones((4, 4, 4), np.uint8), ref.affine).to_filename(small)
    with pytest.raises(
        ValueError, match=r"^'in_mask' must be on the grid of 'in_file'\. Shapes \(4, 4, 4\) and"
    ):
        normalize_to_template(scaled_pair["sub_t1w"], scaled_pair["tpl_t1w"], tmp_path, in_mask=small)


ASEG_GM = [3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 28, 60]


@pytest.mark.slow
@pytest.mark.shared
def test_full_resolution_fast_profile(shared_data, tmp_path):
    """The shared 1 mm T1w (FreeSurfer brain mask) to the 2 mm template with the fast profile."""
    from smriflow.data.templates import get_template

    fs = shared_data / "aomic" / "derivatives" / "freesurfer" / "sub-0002" / "mri"
    t1w = nb.load(shared_data / "bids" / "sub-0002" / "anat" / "sub-0002_T1w.nii.gz")
    mask = np.asarray(nb.load(fs / "brainmask.mgz").dataobj) > 0
    gm = np.isin(np.asarray(nb.load(fs / "aseg.mgz").dataobj), ASEG_GM).astype(np.float32)
    nb.Nifti1Image(t1w.get_fdata(dtype=np.float32) * mask, t1w.affine).to_filename(tmp_path / "brain.nii.gz")
    nb.Nifti1Image(mask.astype(np.uint8), t1w.affine).to_filename(tmp_path / "mask.nii.gz")
    nb.Nifti1Image(gm, t1w.affine).to_filename(tmp_path / "gm.nii.gz")
    tpl = get_template(resolution=2)
    start = time.perf_counter()
    result = normalize_to_template(
        tmp_path / "brain.nii.gz",
        tpl,
        tmp_path / "out",
        in_mask=tmp_path / "mask.nii.gz",
        template_mask=get_template(resolution=2, suffix="mask"),
        preset="fast",
        num_threads=2,
    )
    elapsed = time.perf_counter() - start
    gm_tpl = apply_transforms(
        tmp_path / "gm.nii.gz", tpl, [result.forward_transform], tmp_path / "gm_tpl.nii.gz"
    )
    ratio = volume_mm3(modulate(gm_tpl, result.log_jacobian)) / volume_mm3(tmp_path / "gm.nii.gz")
    assert ratio == pytest.approx(1.0, abs=0.01)
    tpl_gm = _data(get_template(resolution=2, suffix="probseg", label="GM")) > 0.5
    assert _dice(_data(gm_tpl) > 0.5, tpl_gm) > 0.70
    assert elapsed < 120  # 13-19 s measured on 2 idle cores: this only catches a wrong grid or schedule


_RUN = """
import sys
from smriflow.anat.spatial_normalization import normalize_to_template
sub, mask, tpl, tpl_mask, out = sys.argv[1:]
normalize_to_template(sub, tpl, out, in_mask=mask, template_mask=tpl_mask, preset="testing", num_threads=2)
"""


def test_two_processes_with_two_threads_are_bit_identical(scaled_pair, tmp_path):
    """What a re-run does: a fresh process each time, ITK on 2 threads, same seed -> the same bytes."""
    import subprocess
    import sys

    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = [str(scaled_pair[k]) for k in ("sub_t1w", "sub_mask", "tpl_t1w", "tpl_mask")] + [str(out)]
        subprocess.run([sys.executable, "-c", _RUN, *args], check=True, timeout=300)
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir())
    for name in names:  # every file, HDF5 composites included, byte for byte
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
