"""Multichannel tissue segmentation (issue 9): a T2w/FLAIR channel refines the T1w-only memberships.

Synthetic phantom: a WM core, a GM shell and a CSF rim. The T1w is deliberately noisy (GM and CSF overlap),
the T2w separates GM from CSF well, so a segmentation that uses the T2w must be closer to the truth.
"""

from __future__ import annotations

import json

import nibabel as nb
import numpy as np
import pytest

from smriflow.anat.tissue_segmentation import (
    NO_EXTRA_CHANNEL_WARNING,
    atropos_posteriors,
    segment_tissues,
    segment_tissues_multichannel,
)
from smriflow.utils.metrics import dice

pytestmark = pytest.mark.ants

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (36, 40, 38)


def _phantom(seed: int = 0, t1_noise: float = 22.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """T1w (noisy), T2w (clean contrast), brain mask and truth labels (1 GM, 2 WM, 3 CSF)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = (np.array(SHAPE) - 1) / 2
    r = np.sqrt(sum(((grid[i] - centre[i]) / (SHAPE[i] / 2)) ** 2 for i in range(3)))
    truth = np.select([r < 0.5, r < 0.72, r < 0.85], [2, 1, 3], 0).astype(np.uint8)
    mask = r < 0.85
    t1_means = np.array([0.0, 100.0, 160.0, 45.0], np.float32)
    t2_means = np.array([0.0, 110.0, 70.0, 220.0], np.float32)
    t1 = t1_means[truth] + rng.normal(0, t1_noise, SHAPE).astype(np.float32) * mask
    t2 = t2_means[truth] + rng.normal(0, 8.0, SHAPE).astype(np.float32) * mask
    return t1.astype(np.float32), t2.astype(np.float32), mask, truth


def _scores(dseg: np.ndarray, truth: np.ndarray) -> list[float]:
    return [dice(dseg == k, truth == k) for k in (1, 2, 3)]


@pytest.fixture(scope="module")
def phantom():
    return _phantom()


@pytest.fixture(scope="module")
def multichannel(phantom):
    t1, t2, mask, _ = phantom
    return segment_tissues_multichannel(t1, {"T2w": t2}, mask, AFFINE)


def test_a_t2w_channel_beats_the_noisy_t1w(phantom, multichannel):
    t1, _, mask, truth = phantom
    _, alone, _ = segment_tissues(t1, mask, (2.0, 2.0, 2.0))
    _, dseg, info = multichannel
    before, after = _scores(alone, truth), _scores(dseg, truth)
    # GM and CSF overlap on this T1w; the T2w separates them
    assert after[0] > before[0] + 0.05, (before, after)
    assert after[2] > before[2] + 0.05, (before, after)
    assert after[1] >= before[1] - 0.01, (before, after)
    assert info["multichannel"]["channels"] == ["T1w", "T2w"]
    assert info["multichannel"]["atropos_channels"] == ["T2w"]
    assert "warnings" not in info


def test_probabilities_sum_to_one_and_match_the_labels(phantom, multichannel):
    _, _, mask, _ = phantom
    probseg, dseg, _ = multichannel
    assert probseg.dtype == np.float32 and probseg.shape == SHAPE + (3,)
    assert probseg.min() >= 0 and probseg.max() <= 1
    np.testing.assert_allclose(probseg[mask].sum(-1), 1.0, atol=1e-5)
    assert not probseg[~mask].any() and not dseg[~mask].any()
    np.testing.assert_array_equal(dseg[mask], probseg[mask].argmax(-1) + 1)


def test_rerun_is_identical(phantom, multichannel):
    t1, t2, mask, _ = phantom
    again = segment_tissues_multichannel(t1, {"T2w": t2}, mask, AFFINE)
    np.testing.assert_array_equal(again[0], multichannel[0])
    np.testing.assert_array_equal(again[1], multichannel[1])


def test_without_an_extra_channel_the_t1w_result_is_kept_with_a_warning(phantom):
    t1, _, mask, _ = phantom
    probseg, dseg, info = segment_tissues_multichannel(t1, {}, mask, AFFINE)
    plain = segment_tissues(t1, mask, (2.0, 2.0, 2.0))
    np.testing.assert_array_equal(probseg, plain[0])
    np.testing.assert_array_equal(dseg, plain[1])
    assert info["warnings"] == ["multichannel=true but no T2w or FLAIR: segmented from the T1w only"]
    assert info["warnings"] == [NO_EXTRA_CHANNEL_WARNING]
    assert info["multichannel"]["channels"] == ["T1w"]


def test_deep_gm_prior_is_kept(phantom):
    t1, t2, mask, truth = phantom
    ball = np.zeros(SHAPE, bool)
    ball[16:20, 18:22, 17:21] = True  # inside the WM core
    assert (truth[ball] == 2).all()
    _, dseg, _ = segment_tissues_multichannel(t1, {"T2w": t2}, mask, AFFINE, deep_gm=ball.astype(np.float32))
    assert (dseg[ball] == 1).all()


def test_oblique_grid_with_an_odd_origin(phantom, multichannel):
    """An oblique affine whose origin float32 cannot hold (ITK refused such crops once): same result."""
    from smriflow.anat.contrasts import rigid_matrix

    t1, t2, mask, _ = phantom
    affine = rigid_matrix([7.0, -5.0, 11.0], [0.123456789, -91.987654321, 33.3333333]) @ AFFINE
    probseg, dseg, _ = segment_tissues_multichannel(t1, {"T2w": t2}, mask, affine)
    np.testing.assert_array_equal(dseg, multichannel[1])
    np.testing.assert_allclose(probseg, multichannel[0], atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"priors": np.ones((3, 3, 3, 3), np.float32)}, r"'priors' shape \(3, 3, 3, 3\) does not match"),
        ({"prior_floor": 1.0}, r"'prior_floor' must be in \[0, 1\). 1.0 was provided."),
        ({"prior_weight": -0.1}, r"'prior_weight' must be in \[0, 1\]. -0.1 was provided."),
        (
            {"channels": [np.ones((2, 2, 2), np.float32)]},
            r"channel 0 shape \(2, 2, 2\) differs from the mask",
        ),
        ({"channels": []}, "atropos_posteriors needs at least one channel."),
        ({"mask": np.zeros(SHAPE, bool)}, "'mask' is empty: nothing to segment."),
    ],
)
def test_atropos_posteriors_errors(phantom, kwargs, message):
    t1, _, mask, _ = phantom
    args = {"channels": [t1], "mask": mask, "priors": np.full(SHAPE + (3,), 1 / 3, np.float32), **kwargs}
    with pytest.raises(ValueError, match=message):
        atropos_posteriors(args.pop("channels"), args.pop("mask"), AFFINE, args.pop("priors"), **args)


def test_extra_channel_shape_error(phantom):
    t1, _, mask, _ = phantom
    with pytest.raises(
        ValueError, match=r"^channel 'T2w' shape \(2, 2, 2\) differs from the T1w \(36, 40, 38\)\.$"
    ):
        segment_tissues_multichannel(t1, {"T2w": np.ones((2, 2, 2))}, mask, AFFINE)


# -- the interface ------------------------------------------------------------------------------------------
def _save(data: np.ndarray, path, dtype=np.float32) -> str:
    img = nb.Nifti1Image(np.asarray(data, dtype=dtype), AFFINE)
    img.set_qform(AFFINE, 1)
    img.set_sform(AFFINE, 1)
    img.to_filename(str(path))
    return str(path)


@pytest.fixture(scope="module")
def files(phantom, tmp_path_factory):
    t1, t2, mask, _ = phantom
    folder = tmp_path_factory.mktemp("mc_inputs")
    return {
        "t1w": _save(t1, folder / "sub-01_T1w.nii.gz"),
        "t2w": _save(t2, folder / "sub-01_space-T1w_T2w.nii.gz"),
        "mask": _save(mask, folder / "sub-01_mask.nii.gz", np.uint8),
    }


def _run(tmp_path, name, **inputs):
    from smriflow.interfaces.tissue_segmentation import TissueSegmentation

    cwd = tmp_path / name
    cwd.mkdir()
    return TissueSegmentation(**inputs).run(cwd=str(cwd)).outputs


def _data(path) -> np.ndarray:
    return np.asarray(nb.load(path).dataobj)


def test_interface_multichannel_false_ignores_the_extra_channels(files, tmp_path):
    base = _run(tmp_path, "base", in_file=files["t1w"], in_mask=files["mask"])
    ignored = _run(
        tmp_path,
        "ignored",
        in_file=files["t1w"],
        in_mask=files["mask"],
        in_t2w=files["t2w"],
        in_flair=files["t2w"],
    )
    for a, b in zip(
        [*base.out_probseg, base.out_dseg, base.out_report],
        [*ignored.out_probseg, ignored.out_dseg, ignored.out_report],
        strict=True,
    ):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read(), a
    assert "multichannel" not in json.loads(open(base.out_report).read())


def test_interface_multichannel(files, phantom, tmp_path):
    _, _, mask, truth = phantom
    out = _run(
        tmp_path, "mc", in_file=files["t1w"], in_mask=files["mask"], in_t2w=files["t2w"], multichannel=True
    )
    report = json.loads(open(out.out_report).read())
    assert report["multichannel"]["channels"] == ["T1w", "T2w"]
    probs = np.stack([_data(p) for p in out.out_probseg], -1)
    np.testing.assert_allclose(probs[mask].sum(-1), 1.0, atol=1e-5)
    dseg = _data(out.out_dseg)
    base = _data(_run(tmp_path, "base", in_file=files["t1w"], in_mask=files["mask"]).out_dseg)
    assert dice(dseg == 1, truth == 1) > dice(base == 1, truth == 1) + 0.05


def test_interface_multichannel_without_a_channel_warns(files, tmp_path):
    out = _run(tmp_path, "none", in_file=files["t1w"], in_mask=files["mask"], multichannel=True)
    base = _run(tmp_path, "base", in_file=files["t1w"], in_mask=files["mask"])
    np.testing.assert_array_equal(_data(out.out_dseg), _data(base.out_dseg))
    report = json.loads(open(out.out_report).read())
    assert report["warnings"] == ["multichannel=true but no T2w or FLAIR: segmented from the T1w only"]


def test_interface_wrong_grid(files, tmp_path):
    other = _save(np.ones((5, 6, 7)), tmp_path / "sub-01_T2w.nii.gz")
    with pytest.raises(ValueError) as info:
        _run(tmp_path, "bad", in_file=files["t1w"], in_mask=files["mask"], in_t2w=other, multichannel=True)
    assert str(info.value) == (
        f"'in_t2w' must be on the grid of 'in_file': {other} has shape (5, 6, 7), "
        "'in_file' has shape (36, 40, 38)."
    )


# -- the sub-workflow: optional inputs left unset stay undefined --------------------------------------------
@pytest.mark.parametrize(("with_t2w", "channels"), [(False, ["T1w"]), (True, ["T1w", "T2w"])])
def test_workflow_optional_channels(files, tmp_path, with_t2w, channels):
    import smriflow

    wf = smriflow.load_workflow("tissue_segmentation", multichannel=True)
    assert wf.get_node("segment").inputs.multichannel is True
    wf.inputs.inputnode.t1w = files["t1w"]
    wf.inputs.inputnode.t1w_mask = files["mask"]
    if with_t2w:
        wf.inputs.inputnode.t2w = files["t2w"]
    wf.base_dir = str(tmp_path / "work")
    wf.config["execution"]["remove_unnecessary_outputs"] = False  # keep out_report (no workflow output)
    wf.run(plugin="Linear")
    (path,) = (tmp_path / "work").rglob("*_tissues.json")
    report = json.loads(path.read_text())
    assert report["multichannel"]["channels"] == channels
    assert ("warnings" in report) is not with_t2w
