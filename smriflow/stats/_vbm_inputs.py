"""File handling of :mod:`smriflow.stats.vbm`: subject labels, discovery, grid checks and input pairing."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nb

from smriflow.utils.grids import same_grid
from smriflow.utils.niftiio import load_image

_SUB = re.compile(r"(?:^|_)sub-([A-Za-z0-9]+)(?=_|\.)")
_SPACE = re.compile(r"_space-([A-Za-z0-9]+)(?=_|\.)")


def name(img: nb.Nifti1Image | str | Path, index: int) -> str:
    """Return the file name of ``img`` for messages, or ``image #n`` for an in-memory image."""
    return str(img) if isinstance(img, str | Path) else f"image #{index + 1}"


def subject_label(path: str | Path) -> str:
    """Return the subject label of a file name (``sub-0001_J.nii.gz`` → ``'0001'``).

    Raises
    ------
    ValueError
        When the file name holds no ``sub-<label>`` entity.
    """
    match = _SUB.search(Path(path).name)
    if not match:
        raise ValueError(f"{path}: no 'sub-<label>' in the file name (the subject ID is read from it)")
    return match.group(1)


def find_modulated_maps(derivatives_dir: str | Path) -> list[Path]:
    """Return smriflow's modulated GM maps under an ``anat_preproc`` derivatives folder, sorted by subject.

    Looks for ``sub-*/[ses-*/]anat/sub-*_space-*_label-GM_desc-modulated_probseg.nii.gz``.

    Raises
    ------
    ValueError
        No map found, maps in more than one template space, or a subject with more than one map.
    """
    root = Path(derivatives_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: derivatives folder not found")
    pattern = "*_space-*_label-GM_desc-modulated_probseg.nii.gz"
    found = sorted(root.glob(f"sub-*/anat/{pattern}")) + sorted(root.glob(f"sub-*/ses-*/anat/{pattern}"))
    if not found:
        raise ValueError(f"{root}: no sub-*/anat/sub-*_space-*_label-GM_desc-modulated_probseg.nii.gz found")
    spaces = sorted({m.group(1) for m in (_SPACE.search(p.name) for p in found) if m})
    if len(spaces) > 1:
        raise ValueError(f"{root}: modulated maps in several template spaces ({', '.join(spaces)}); keep one")
    by_subject: dict[str, list[Path]] = {}
    for path in found:
        by_subject.setdefault(subject_label(path), []).append(path)
    for label, paths in by_subject.items():
        if len(paths) > 1:
            raise ValueError(
                f"{root}: sub-{label} has {len(paths)} modulated maps ({', '.join(p.name for p in paths)}); "
                "VBM takes one per subject"
            )
    return [by_subject[label][0] for label in sorted(by_subject)]


def check_maps_on_one_grid(images: Sequence[nb.Nifti1Image | str | Path], *, what: str = "map") -> None:
    """Check that 3-D images share the shape and affine of the first one.

    Raises
    ------
    ValueError
        Naming both files, when an image is not 3-D or its shape or affine differs from the first image's.
    """
    first = load_image(images[0])
    for index, img in enumerate(images):
        loaded = load_image(img)
        if len(loaded.shape) != 3:
            raise ValueError(f"{name(img, index)}: a 3-D {what} is expected; shape {loaded.shape}")
        if loaded.shape != first.shape:
            raise ValueError(
                f"{name(img, index)}: shape {loaded.shape} differs from {name(images[0], 0)} "
                f"(shape {first.shape}); every {what} must be on the same grid"
            )
        if not same_grid(loaded, first):
            raise ValueError(
                f"{name(img, index)}: affine differs from {name(images[0], 0)}; "
                f"every {what} must be on the same grid"
            )


def pair_jacobians(gm_maps: Sequence[str | Path], jacobians: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Pair warped GM maps with Jacobian maps by the ``sub-<label>`` of their file names.

    Returns
    -------
    list of (Path, Path)
        ``(gm_map, jacobian)`` sorted by subject label.

    Raises
    ------
    ValueError
        Duplicated subjects, or a subject that has a GM map but no Jacobian (or the reverse).
    """
    gm = _by_label(gm_maps, "--gm-maps")
    jac = _by_label(jacobians, "--jacobians")
    for label in sorted(set(gm) ^ set(jac)):
        have, lack = ("GM map", "Jacobian") if label in gm else ("Jacobian", "GM map")
        path = gm.get(label) or jac.get(label)
        raise ValueError(f"{path}: sub-{label} has a {have} but no {lack}")
    return [(gm[label], jac[label]) for label in sorted(gm)]


def _by_label(paths: Sequence[str | Path], option: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in map(Path, paths):
        label = subject_label(path)
        if label in out:
            raise ValueError(f"{path}: sub-{label} is given twice in {option} (also {out[label]})")
        out[label] = path
    return out


def collect_inputs(
    derivatives: str | Path | None,
    gm_maps: Sequence[str | Path] | None,
    jacobians: Sequence[str | Path] | None,
    convention: str | None,
    modulate: Callable[[Path, Path, str], nb.Nifti1Image],
) -> tuple[list[nb.Nifti1Image], list[nb.Nifti1Image], list[str], str | None]:
    """Return (modulated maps, unmodulated maps for the template, subject labels, template space)."""
    if (derivatives is None) == (gm_maps is None):
        raise ValueError("give either 'derivatives' or 'gm_maps' with 'jacobians', not both or neither")
    if derivatives is not None:
        if jacobians:
            raise ValueError("'jacobians' go with 'gm_maps'; smriflow's derivatives are already modulated")
        paths = find_modulated_maps(derivatives)
        check_maps_on_one_grid(paths)
        modulated = [load_image(p) for p in paths]
        plain = [p.with_name(p.name.replace("_desc-modulated", "")) for p in paths]
        missing = [p for p in plain if not p.is_file()]
        if missing:
            raise ValueError(f"{missing[0]}: unmodulated GM map not found (the study template is their mean)")
        templates = [load_image(p) for p in plain]
        space = _SPACE.search(paths[0].name)
        labels = [subject_label(p) for p in paths]
    else:
        if not jacobians or convention is None:
            raise ValueError("'gm_maps' need 'jacobians' and a 'jacobian_convention' (fsl or ants)")
        for path in [*gm_maps, *jacobians]:
            if not Path(path).is_file():
                raise ValueError(f"{path}: file not found")
        pairs = pair_jacobians(gm_maps, jacobians)
        check_maps_on_one_grid([g for g, _ in pairs], what="GM map")
        modulated = [modulate(g, j, convention) for g, j in pairs]
        templates = [load_image(g) for g, _ in pairs]
        space = _SPACE.search(pairs[0][0].name)
        labels = [subject_label(g) for g, _ in pairs]
    return modulated, templates, labels, space.group(1) if space else None
