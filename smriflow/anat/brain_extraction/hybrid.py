"""Brain extraction for hard scans: the learned mask finds the brain, the template fits and refines its edge.

Method ``hybrid``, on a bias-corrected T1w (any field of view, position or tilt of the head):

1. **Learned mask** (:func:`.learned.learned_brain_mask`, deepbet through onnxruntime) of the head's
   bounding box (:func:`smriflow.utils.morphology.head_mask`, plus 10 mm): it finds the brain whatever the
   field of view holds (neck, shoulders) and however the head is tilted; the box keeps a head far from the
   centre of a large field of view from fooling it (on the full 336 × 256 × 336 volume it took 3 l).
   Its volume must be plausible (``volume_ml``, default 600-2500 ml), or the subject fails with one line.
2. **Skull already removed?** When almost nothing of the head lies more than 5 mm outside the learned mask
   (``outside_fraction`` < 0.1 of the mask's volume), the input is taken as skull-stripped: no second
   strip; the mask is the nonzero brain region (above 2 % of its 99th percentile, largest component,
   holes filled, within 10 mm of the learned mask).
3. **Crop and register.** The image is cropped to the learned mask's box plus 20 mm (the neck is cut away),
   reduced to ~2 mm, masked by the learned mask dilated 6 mm (instead of the k-means crude mask of
   ``ants``), and registered affinely to the template brain (as ``ants``: global correlation, the template
   mask dilated 4 mm as metric mask). The first start is ANTs' centre-of-mass initialization of this
   masked image; the later ones add a rotation of ±20° about each axis around the centres.
4. **Check** every start: the Dice of the warped template mask with the learned mask (``dice_prior`` ≥
   0.85), the normalized cross-correlation of the warped subject with the template in the template's brain
   (``ncc`` ≥ 0.5) and the volume ratio subject/template of the affine (``scale`` 0.45-1.6). The first
   start that passes is kept; if none does, the subject fails with one line naming the check and values.
5. **Edge.** The template mask pulled back to the subject is refined on the subject's intensities
   (:func:`.template.refine_brain_mask`, as ``ants``). The refined mask is checked against the learned
   one (Dice ≥ 0.93 and a volume within 15 %); if it fails, the learned mask is used and the record says so.

Intensities are shifted so that the lowest is 0 (z-scored or other negative inputs). Everything the path
did — the branch, each start with its check values, the retries, why a fallback was taken — goes into the
record (``info``) that the ``BrainExtraction`` interface writes. Measured figures:
``bench/brain_extraction.py`` and docs/anat_preproc.md ("Hard scans: brain extraction").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
from scipy import ndimage

from smriflow.anat.brain_extraction.template import (
    BrainExtractionResult,
    _grid_2mm,
    refine_brain_mask,
    template_images,
    warp_template_mask,
)
from smriflow.utils.grids import block_reduce
from smriflow.utils.metrics import dice, ncc
from smriflow.utils.morphology import bounding_box, dilate_mm, head_mask, largest_component

__all__ = ["CHECKS", "STARTS", "hybrid_brain_extraction"]

#: the checks of a registration start and of the result: name -> (low, high) bounds, inclusive
CHECKS: dict[str, tuple[float, float]] = {
    "volume_ml": (600.0, 2500.0),  # the learned mask, brain plus CSF
    "dice_prior": (0.85, 1.0),  # warped template mask vs learned mask
    "ncc": (0.5, 1.0),  # warped subject vs template, in the template's brain
    "scale": (0.45, 1.6),  # determinant of the affine (subject/template volume)
    "refined_dice": (0.93, 1.0),  # refined mask vs learned mask
    "refined_volume_ratio": (0.85, 1.15),  # refined / learned volume
}
#: registration starts: name and rotation (degrees) about the LPS x, y, z axes through the centres
STARTS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("centre of mass", (0.0, 0.0, 0.0)),
    ("pitch +20", (20.0, 0.0, 0.0)),
    ("pitch -20", (-20.0, 0.0, 0.0)),
    ("roll +20", (0.0, 20.0, 0.0)),
    ("roll -20", (0.0, -20.0, 0.0)),
    ("yaw +20", (0.0, 0.0, 20.0)),
    ("yaw -20", (0.0, 0.0, -20.0)),
)
_OUTSIDE_STRIPPED = 0.1  # head volume > 5 mm outside the learned mask, as a fraction of it: skull-stripped
_CROP_MM, _MOVING_DILATION_MM, _HEAD_MARGIN_MM = 20.0, 6.0, 10.0
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


class BrainExtractionError(ValueError):
    """A check of the hybrid brain extraction failed (the message is one line naming it)."""


def _failed(name: str, value: float) -> bool:
    low, high = CHECKS[name]
    return not low <= value <= high


def _describe(name: str, value: float) -> str:
    low, high = CHECKS[name]
    return f"{name} {value:.3g} outside [{low:g}, {high:g}]"


def _rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    rx, ry, rz = np.deg2rad(degrees)
    x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    return z @ y @ x


def _centre_lps(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The centroid of a mask in ITK's LPS world coordinates."""
    centre = affine[:3, :3] @ np.argwhere(mask).mean(0) + affine[:3, 3]
    return _RAS_TO_LPS @ centre


def _register(fixed, moving, fixed_mask, initial: str | None, outprefix: str, ants) -> str:
    """One affine registration (as ``ants``: global correlation); the forward transform file."""
    kwargs = {"initial_transform": initial} if initial is not None else {}
    out = ants.registration(
        fixed, moving, "Affine", mask=fixed_mask, aff_metric="GC", outprefix=outprefix, **kwargs
    )
    return out["fwdtransforms"][0]


def _check_start(xfm: str, fixed, moving, tpl_brain: np.ndarray, learned_box, box_args, template, ants):
    """Check values of one registration start and the prior it gives on the crop box."""
    warped = ants.apply_transforms(fixed, moving, [xfm], interpolator="linear").numpy()
    similarity = ncc(warped, fixed.numpy(), tpl_brain)
    params = np.asarray(ants.read_transform(xfm).parameters)
    scale = float(np.linalg.det(params[:9].reshape(3, 3)))
    prior = warp_template_mask(*box_args, [xfm], [True], template, ants)
    values = {
        "dice_prior": round(dice(prior[learned_box[0]] > 0.5, learned_box[1]), 4),
        "ncc": round(similarity if np.isfinite(similarity) else 0.0, 4),
        "scale": round(scale, 4),
    }
    return values, prior


def hybrid_brain_extraction(
    img: nb.Nifti1Image,
    *,
    template: str = "MNI152NLin2009aSym",
    use_syn: bool = False,
    tissue_threshold: float = 0.42,
    work_dir: str | Path | None = None,
    num_threads: int = 1,
    seed: int = 20161,
    threshold: float = 0.5,
    max_starts: int = len(STARTS),
) -> BrainExtractionResult:
    """Brain mask of a bias-corrected T1w: learned mask, checked template registration, refined edge.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Bias-corrected T1w, with or without skull, any field of view.
    template, use_syn, tissue_threshold, work_dir, num_threads, seed
        As :func:`.template.brain_extraction`.
    threshold : float
        Brain-probability threshold of the learned mask.
    max_starts : int
        Registration starts to try (the first of :data:`STARTS`) before failing.

    Returns
    -------
    BrainExtractionResult
        Mask and prior on the input grid, transforms; ``info`` records the path taken (``path``:
        ``refined``, ``learned (refinement check failed)`` or ``skull-stripped input``), the check values
        of every start (``starts``), the chosen start and the learned mask's record (``deepbet_*``).

    Raises
    ------
    BrainExtractionError
        One line naming the failed check: an implausible learned-mask volume, or no registration start
        passing its checks.
    """
    from smriflow.anat.brain_extraction.learned import learned_brain_mask
    from smriflow.utils.antsenv import import_ants
    from smriflow.utils.antsio import ants_seed, registration_dir, to_ants

    if not 1 <= max_starts <= len(STARTS):
        raise ValueError(f"'max_starts' must be within 1-{len(STARTS)}. {max_starts!r} was provided.")
    ants = import_ants(num_threads)
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    voxel_ml = float(np.prod(zooms)) / 1000
    offset = float(min(np.nanmin(data), 0.0))
    work = np.nan_to_num(data - offset)

    # the network sees the head's box only: a head far from the centre of a large field of view fools it
    head = head_mask(work, zooms)
    head_box = bounding_box(head, [int(np.ceil(_HEAD_MARGIN_MM / z)) for z in zooms])
    found, learned_info = learned_brain_mask(
        img.slicer[head_box], threshold=threshold, num_threads=num_threads
    )
    learned = np.zeros(data.shape, dtype=bool)
    learned[head_box] = found
    info: dict[str, Any] = {"method": "hybrid", "template": template, "use_syn": bool(use_syn)}
    info["head_box_voxels"] = [[int(b.start), int(b.stop)] for b in head_box]
    info.update({f"deepbet_{k}": v for k, v in learned_info.items() if k != "method"})
    info["intensity_offset"] = offset
    volume = float(learned.sum()) * voxel_ml
    info["learned_volume_ml"] = round(volume, 1)
    if _failed("volume_ml", volume):
        raise BrainExtractionError(
            f"brain extraction (hybrid): the learned brain mask {_describe('volume_ml', volume)} ml "
            "(is this a T1w of an adult head with correct voxel sizes?)"
        )

    # skull already removed: the head is hardly larger than the brain
    # (in the head's box, which holds the head and the learned mask: a fine T1w's full grid is mostly air)
    outside = float((head[head_box] & ~dilate_mm(learned[head_box], 5.0, zooms)).sum()) * voxel_ml
    info["outside_fraction"] = round(outside / volume, 4)
    stripped = info["outside_fraction"] < _OUTSIDE_STRIPPED
    info["skull_stripped_input"] = bool(stripped)

    # crop to the learned brain (no neck) and reduce to ~2 mm for the registration
    box = bounding_box(learned, [int(np.ceil(_CROP_MM / z)) for z in zooms])
    lo = np.array([s.start for s in box])
    hi = np.array([s.stop for s in box])
    crop_affine = img.affine.copy()
    crop_affine[:3, 3] = img.affine[:3, :3] @ lo + img.affine[:3, 3]
    small, small_affine, factors = _grid_2mm(nb.Nifti1Image(work[box], crop_affine))
    small_zooms = np.sqrt((small_affine[:3, :3] ** 2).sum(0))
    small_learned = block_reduce(learned[box].astype(np.float32), factors) > 0.5
    moving = to_ants(small * dilate_mm(small_learned, _MOVING_DILATION_MM, small_zooms), small_affine, ants)
    fixed, fixed_mask = template_images(template, ants)
    tpl_brain = _template_brain(template)
    info["crop_voxels"] = [[int(a), int(b)] for a, b in zip(lo, hi, strict=True)]

    centre_subject = _centre_lps(small_learned, small_affine)
    centre_template = _centre_lps(tpl_brain, _template_affine(template))
    box_args = (data.shape, img.affine, lo, hi)
    starts: list[dict[str, Any]] = []
    chosen = prior = None
    with ants_seed(ants, seed):
        for i, (name, degrees) in enumerate(STARTS[:max_starts]):
            initial = None
            if i > 0:
                tx = ants.create_ants_transform(
                    transform_type="AffineTransform",
                    dimension=3,
                    matrix=_rotation(degrees),
                    center=tuple(centre_template),
                    translation=tuple(centre_subject - centre_template),
                )
                initial = registration_dir(work_dir, f"start{i}") + "initial.mat"
                ants.write_transform(tx, initial)
            xfm = _register(
                fixed, moving, fixed_mask, initial, registration_dir(work_dir, f"affine{i}"), ants
            )
            values, candidate = _check_start(
                xfm, fixed, moving, tpl_brain, (box, learned[box]), box_args, template, ants
            )
            failed = [_describe(k, v) for k, v in values.items() if _failed(k, v)]
            starts.append({"start": name, **values, "passed": not failed, "failed": failed})
            if not failed:
                chosen, prior = xfm, candidate
                break
        info["starts"] = starts
        info["retries"] = len(starts) - 1
        if chosen is None:
            best = max(starts, key=lambda s: s["ncc"])
            raise BrainExtractionError(
                f"brain extraction (hybrid): the registration to {template} failed its checks from all "
                f"{len(starts)} starts (best '{best['start']}': {'; '.join(best['failed'])})"
            )
        info["start"] = starts[-1]["start"]
        info.update({k: v for k, v in starts[-1].items() if k in ("dice_prior", "ncc", "scale")})
        warp = inv_warp = None
        to_subject, invert = [chosen], [True]
        if use_syn:
            syn = ants.registration(
                fixed,
                moving,
                "SyNOnly",
                initial_transform=chosen,
                mask=fixed_mask,
                outprefix=registration_dir(work_dir, "syn"),
            )
            warp = next(f for f in syn["fwdtransforms"] if f.endswith("Warp.nii.gz"))
            inv_warp = next(f for f in syn["invtransforms"] if f.endswith("InverseWarp.nii.gz"))
            to_subject, invert = [chosen, inv_warp], [True, False]
            prior = warp_template_mask(*box_args, to_subject, invert, template, ants)

    if stripped:
        mask = _nonzero_brain(work, learned, zooms)
        info["path"] = "skull-stripped input"
        info["path_reason"] = (
            f"only {info['outside_fraction']:.1%} of the learned brain's volume lies in the head more than "
            "5 mm outside it: no second skull strip, the mask is the nonzero brain region"
        )
    else:
        refined = refine_brain_mask(work, zooms, prior, tissue_threshold=tissue_threshold)
        info["refined_dice"] = round(dice(refined, learned), 4)
        info["refined_volume_ratio"] = round(float(refined.sum()) / float(learned.sum()), 4)
        failed = [
            _describe(k, info[k]) for k in ("refined_dice", "refined_volume_ratio") if _failed(k, info[k])
        ]
        if failed:
            mask = learned
            info["path"] = "learned (refinement check failed)"
            info["path_reason"] = "the refined edge disagreed with the learned mask: " + "; ".join(failed)
        else:
            mask = refined
            info["path"] = "refined"
            info["path_reason"] = (
                f"registration passed its checks from start '{info['start']}'; the template mask was "
                "refined on the subject's intensities"
            )
    info["refine"] = info["path"] == "refined"
    info["brain_volume_ml"] = float(mask.sum() * np.prod(zooms) / 1000)
    return BrainExtractionResult(mask, prior, chosen, warp, inv_warp, info)


def _template_brain(template: str) -> np.ndarray:
    from smriflow.data.templates import get_template

    return np.asarray(nb.load(get_template(template, resolution=2, suffix="mask")).dataobj) > 0


def _template_affine(template: str) -> np.ndarray:
    from smriflow.data.templates import get_template

    return nb.load(get_template(template, resolution=2, suffix="mask")).affine


def _nonzero_brain(work: np.ndarray, learned: np.ndarray, zooms) -> np.ndarray:
    """The nonzero region of a skull-stripped image: above 2 % of the brain's 99th percentile, one piece."""
    level = 0.02 * float(np.percentile(work[learned], 99))
    region = largest_component((work > level) & dilate_mm(learned, 10.0, zooms))
    return ndimage.binary_fill_holes(region)
