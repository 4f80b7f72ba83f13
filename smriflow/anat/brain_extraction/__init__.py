"""Brain extraction: a registry of methods and the one function that runs any of them.

Every method shares the template registration of :mod:`.template` (an affine of the crude-masked subject to
the skull-stripped template; optionally SyN), which gives the warped template brain mask (the *prior*) and
the subject-to-template affine that spatial normalization starts from. Methods differ in where the mask
comes from:

- ``ants`` (default): the prior refined on the subject's intensities (:func:`.template.refine_brain_mask`).
- ``hybrid``: the deepbet mask locates the brain (the neck is cropped away), the affine starts from it and
  is checked and retried from other starts, the edge is refined as ``ants`` (:mod:`.hybrid`).
- ``deepbet``: the deepbet CNN (Fisch et al., 2024), its networks served by onnxruntime from the files
  shipped in ``smriflow/data/deepbet`` (:mod:`.learned`; no torch).

Adding a method is one module with a mask function ``(img, *, num_threads, **options) -> (mask, info)``
and one entry in :data:`METHODS`; the ``BrainExtraction`` interface's ``method`` choices and the YAML
``brain_method``/``method`` arguments are derived from this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np

from smriflow.anat.brain_extraction.template import BrainExtractionResult, brain_extraction
from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.utils.seed import DEFAULT_SEED

__all__ = ["METHODS", "BrainExtractionMethod", "BrainExtractionResult", "extract_brain"]

#: a method's mask function: ``(img, *, num_threads, **options) -> (boolean mask on img's grid, record)``
MaskFunction = Callable[..., tuple[np.ndarray, dict[str, Any]]]


def _deepbet(img: nb.spatialimages.SpatialImage, *, num_threads: int, **options: Any):
    from smriflow.anat.brain_extraction.learned import learned_brain_mask

    mask, info = learned_brain_mask(img, num_threads=num_threads, **options)
    return mask, {f"deepbet_{key}": value for key, value in info.items() if key != "method"}


def _hybrid(img: nb.spatialimages.SpatialImage, **kwargs: Any) -> BrainExtractionResult:
    from smriflow.anat.brain_extraction.hybrid import hybrid_brain_extraction

    return hybrid_brain_extraction(img, **kwargs)


@dataclass(frozen=True)
class BrainExtractionMethod:
    """One brain-extraction method.

    Attributes
    ----------
    name : str
        The value of ``method`` (interface) and ``brain_method`` (``anat_preproc``).
    summary : str
        One line for the interface's and the workflows' documentation.
    mask : callable or None
        The mask function; None means the template prior refined on the subject's intensities.
    options : mapping
        The interface inputs this method reads, by the option name its mask function takes.
    run : callable or None
        A method with its own registration path: ``(img, *, template, use_syn, tissue_threshold, work_dir,
        num_threads, seed, **options) -> BrainExtractionResult``; it replaces the shared registration.
    """

    name: str
    summary: str
    mask: MaskFunction | None = None
    options: Mapping[str, str] | None = None
    run: Callable[..., BrainExtractionResult] | None = None


METHODS: dict[str, BrainExtractionMethod] = {
    method.name: method
    for method in (
        BrainExtractionMethod(
            "ants",
            "affine to the skull-stripped template, warped template mask refined on intensities",
        ),
        BrainExtractionMethod(
            "deepbet",
            "the deepbet CNN (through onnxruntime, shipped with smriflow), plus the same affine",
            _deepbet,
            {"threshold": "deepbet_threshold", "n_dilate": "deepbet_dilate"},
        ),
        BrainExtractionMethod(
            "hybrid",
            "deepbet finds the brain (neck cropped); a checked, retried affine from it; edge refined as ants",
            options={"threshold": "deepbet_threshold"},
            run=_hybrid,
        ),
    )
}


def extract_brain(
    img: nb.Nifti1Image,
    *,
    method: str = "ants",
    options: Mapping[str, Any] | None = None,
    template: str = DEFAULT_TEMPLATE,
    use_syn: bool = False,
    refine: bool = True,
    tissue_threshold: float = 0.42,
    work_dir: str | Path | None = None,
    num_threads: int = 1,
    seed: int = DEFAULT_SEED,
) -> BrainExtractionResult:
    """Brain mask of a bias-corrected head T1w with one of the :data:`METHODS`.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Bias-corrected head T1w.
    method : str
        A key of :data:`METHODS`.
    options : mapping or None
        The method's own options (e.g. ``threshold`` and ``n_dilate`` for ``deepbet``).
    template, use_syn, refine, tissue_threshold, work_dir, num_threads, seed
        See :func:`.template.brain_extraction`; ``refine`` applies to ``ants`` only.

    Returns
    -------
    BrainExtractionResult
        Mask and prior on the input grid, transforms, and ``info``: the record of the run (method,
        template, options, brain volume in ml).

    Raises
    ------
    ValueError
        For an unknown method (the message lists the registered ones).
    """
    if method not in METHODS:
        raise ValueError(f"'method' must be one of {sorted(METHODS)}. {method!r} was provided.")
    chosen = METHODS[method]
    if chosen.run is not None:
        return chosen.run(
            img,
            template=template,
            use_syn=use_syn,
            tissue_threshold=tissue_threshold,
            work_dir=work_dir,
            num_threads=num_threads,
            seed=seed,
            **dict(options or {}),
        )
    learned = None
    if chosen.mask is not None:  # first, so a missing extra fails before the registration
        learned = chosen.mask(img, num_threads=num_threads, **dict(options or {}))
    result = brain_extraction(
        img,
        template=template,
        use_syn=use_syn,
        refine=refine and learned is None,
        tissue_threshold=tissue_threshold,
        work_dir=work_dir,
        num_threads=num_threads,
        seed=seed,
    )
    if learned is not None:
        mask, record = learned
        zooms = img.header.get_zooms()[:3]
        result.mask = mask
        result.info.update(record)
        result.info.update(
            method=method, refine=False, brain_volume_ml=float(mask.sum() * np.prod(zooms) / 1000)
        )
    return result
