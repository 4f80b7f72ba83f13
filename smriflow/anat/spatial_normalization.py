"""Spatial normalization of a brain-extracted T1w image to a template with antspyx, and resampling through it.

Direction of the transforms
---------------------------
ANTs registers a *moving* image (the subject) to a *fixed* one (the template). The mapping it estimates takes
template points to subject points; resampling the subject into the template goes through it. smriflow writes
it as one ANTs composite file per direction, named as sMRIPrep names its transforms:

* ``from-T1w_to-<tpl>_mode-image_xfm.h5``: resamples subject-space images into the template (affine and SyN
  warp, in that order for points of the template);
* ``from-<tpl>_to-T1w_mode-image_xfm.h5``: resamples template-space images (atlases) into the subject.

Both are used as the only item of ``ants.apply_transforms(transformlist=[...])`` (or ``antsApplyTransforms
-t``), with no inversion flag.

Pitfalls handled here (see ``notes/anat-baseline.md``)
------------------------------------------------------
* ``ants.registration`` collects its outputs by globbing the output prefix, so a second call whose prefix
  starts like the first one silently applies transforms twice. Every call gets its own, emptied, folder.
* Repeatability: the random seed of ANTs' metric sampling is fixed (``--random-seed``) and the ITK thread
  count is set before ITK starts (:func:`smriflow.utils.antsenv.import_ants`); two runs with the same seed and
  thread count give bit-identical files (the HDF5 composites are rewritten without ITK's time stamps).
  This holds for the GC and CC metrics of the presets at any thread count; ANTs' Mattes mutual information
  accumulates its joint histogram per thread and is repeatable only with one thread.
* nilearn's MNI152 template is skull-stripped: the subject side must be brain-only too. The moving image is
  multiplied by its brain mask and cropped to it (plus a margin), which also makes every level cheaper.
* The default affine initialization of ANTs (centres of mass, unit scale) lets the affine stage stop at a
  poor local optimum for a small brain (mask Dice 0.82 at 2 mm here). smriflow starts instead from the
  *moments* of the two brain masks: centroids and the cube root of their volume ratio.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nb
import numpy as np

from smriflow.anat.label_resampling import write_labels
from smriflow.anat.modulation import log_jacobian_image
from smriflow.data.templates import DEFAULT_TEMPLATE
from smriflow.utils.antsenv import import_ants
from smriflow.utils.antsio import ants_seed, registration_dir
from smriflow.utils.atomic import atomic_write
from smriflow.utils.morphology import bounding_box
from smriflow.utils.niftiio import image_like
from smriflow.utils.seed import DEFAULT_SEED

__all__ = [
    "INTERPOLATIONS",
    "PRESETS",
    "NormalizationResult",
    "RegistrationPreset",
    "apply_transforms",
    "get_preset",
    "moments_initializer",
    "normalize_to_template",
    "transform_names",
]

INTERPOLATIONS = ("linear", "nearestNeighbor", "genericLabel", "bSpline", "lanczosWindowedSinc")
_LABEL_INTERPOLATIONS = ("nearestNeighbor", "genericLabel")
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RegistrationPreset:
    """Parameters of the affine + SyN schedule.

    Attributes
    ----------
    template_resolution : int
        Voxel size (mm) of the template grid, which is the grid SyN runs on and the output grid.
    affine_metric : str
        Metric of the affine stage (``"GC"``, ``"mattes"``, ``"meansquares"``).
    affine_iterations, affine_shrink_factors, affine_smoothing_sigmas : tuple of int
        Multi-resolution schedule of the affine stage (same length; sigmas in voxels).
    affine_sampling_rate : float
        Fraction of template voxels sampled (regular grid with seeded jitter) by the affine metric.
    syn_metric : str
        Metric of the SyN stage (``"CC"``, neighbourhood cross-correlation, or ``"mattes"``: faster, less
        accurate, and not bit-repeatable with more than one thread).
    syn_sampling : int
        Histogram bins (``mattes``) or radius (``CC``) of the SyN metric.
    syn_iterations : tuple of int
        Iterations per SyN level; levels are shrunk by 2**k (e.g. (40, 20, 0) = shrink 4, 2, 1).
    grad_step, flow_sigma, total_sigma : float
        ``SyN[grad_step, flow_sigma, total_sigma]``.
    crop_margin_mm : float
        Margin kept around the subject's brain mask when cropping the moving image.
    """

    template_resolution: int = 2
    affine_metric: str = "GC"
    affine_iterations: tuple[int, ...] = (1000, 500, 100)
    affine_shrink_factors: tuple[int, ...] = (4, 2, 1)
    affine_smoothing_sigmas: tuple[int, ...] = (2, 1, 0)
    affine_sampling_rate: float = 0.15
    syn_metric: str = "CC"
    syn_sampling: int = 1
    syn_iterations: tuple[int, ...] = (40, 20, 0)
    grad_step: float = 0.2
    flow_sigma: float = 3.0
    total_sigma: float = 0.0
    crop_margin_mm: float = 10.0


#: Named schedules. ``fast``: SyN on the 2 mm template grid, 8 and 4 mm levels, CC radius 1 (measured on the
#: shared T1w, 2 threads: affine 2-4 s + SyN 8-11 s, warped-GM/template-GM Dice 0.73, WM 0.76; SyN with
#: Mattes MI instead of CC: 4 s, Dice 0.69 / 0.71); ``precise``: the 1 mm template grid, SyN at 4 and 2 mm,
#: affine at 4 and 2 mm (~75 s; Dice 0.77 / 0.79 on the 1 mm template; CC radius 2: 250 s, 0.78 / 0.80);
#: ``testing``: a few iterations, for unit tests on tiny images.
PRESETS: dict[str, RegistrationPreset] = {
    "fast": RegistrationPreset(),
    "precise": RegistrationPreset(
        template_resolution=1, affine_iterations=(1000, 500), affine_shrink_factors=(4, 2),
        affine_smoothing_sigmas=(2, 1),
    ),
    "testing": RegistrationPreset(
        affine_iterations=(100, 30), affine_shrink_factors=(2, 1), affine_smoothing_sigmas=(1, 0),
        syn_iterations=(10, 3),
    ),
}  # fmt: skip


def get_preset(preset: str | RegistrationPreset, **overrides) -> RegistrationPreset:
    """Return a :class:`RegistrationPreset` by name (or as given), with some fields overridden.

    Raises
    ------
    ValueError
        When ``preset`` is not a known name or an override is not a field.
    """
    if isinstance(preset, RegistrationPreset):
        found = preset
    elif preset in PRESETS:
        found = PRESETS[preset]
    else:
        raise ValueError(f"'preset' must be one of {sorted(PRESETS)}. {preset!r} was provided.")
    unknown = set(overrides) - set(RegistrationPreset.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"Unknown preset field(s) {sorted(unknown)}. "
            f"Fields: {sorted(RegistrationPreset.__dataclass_fields__)}"
        )
    return replace(found, **overrides)


def transform_names(space: str) -> tuple[str, str]:
    """Return the file names of the forward and inverse composite transforms for template ``space``."""
    return f"from-T1w_to-{space}_mode-image_xfm.h5", f"from-{space}_to-T1w_mode-image_xfm.h5"


@dataclass(frozen=True)
class NormalizationResult:
    """Files written by :func:`normalize_to_template` (all under its ``out_dir``)."""

    warped: Path
    """Subject image resampled onto the template grid (``space-<tpl>_desc-preproc_T1w.nii.gz``)."""
    forward_transform: Path
    """Composite subject-to-template transform (resamples subject images into the template)."""
    inverse_transform: Path
    """Composite template-to-subject transform (resamples template images into the subject)."""
    affine: Path
    """The affine part alone (ANTs ``.mat``; template points to subject points)."""
    log_jacobian: Path
    """Log-Jacobian determinant of the complete mapping, on the template grid (see ``utils.modulation``)."""


def _mask_moments(mask, ants) -> tuple[np.ndarray, float]:
    """Return the centroid (LPS mm) and volume (mm³) of the non-zero voxels of an ANTsImage."""
    data = mask.numpy() > 0
    if not data.any():
        raise ValueError("A brain mask used for the registration is empty.")
    idx = np.argwhere(data).astype(np.float64)
    spacing = np.asarray(mask.spacing, dtype=np.float64)
    direction = np.asarray(mask.direction, dtype=np.float64)
    points = np.asarray(mask.origin, dtype=np.float64) + (idx * spacing) @ direction.T
    return points.mean(axis=0), float(data.sum() * np.prod(spacing))


def moments_initializer(template_mask, subject_mask, out_file: str | Path, ants=None) -> Path:
    """Write the similarity transform that maps the template brain mask's moments onto the subject's.

    The transform (ANTs ``.mat``, template points to subject points) is centred on the template centroid,
    translates it onto the subject centroid and scales isotropically by the cube root of the volume ratio.

    Parameters
    ----------
    template_mask, subject_mask : ANTsImage
        Brain masks (non-zero = brain).
    out_file : str or pathlib.Path
        Where to write the transform.
    ants : module, optional
        The imported ``ants`` module (imported with one thread when omitted).

    Returns
    -------
    pathlib.Path
        ``out_file``.
    """
    ants = ants or import_ants(1)
    c_tpl, v_tpl = _mask_moments(template_mask, ants)
    c_sub, v_sub = _mask_moments(subject_mask, ants)
    scale = (v_sub / v_tpl) ** (1.0 / 3.0)
    tx = ants.create_ants_transform(
        transform_type="AffineTransform",
        dimension=3,
        matrix=np.eye(3) * scale,
        center=tuple(c_tpl),
        translation=tuple(c_sub - c_tpl),
    )
    ants.write_transform(tx, str(out_file))
    return Path(out_file)


def apply_transforms(
    in_file: str | Path,
    reference: str | Path,
    transforms: Sequence[str | Path],
    out_file: str | Path,
    *,
    interpolation: str = "linear",
    default_value: float = 0.0,
    num_threads: int = 1,
) -> Path:
    """Resample a 3-D image onto a reference grid through ANTs transforms.

    Parameters
    ----------
    in_file : str or pathlib.Path
        Image to resample.
    reference : str or pathlib.Path
        Image that defines the output grid; the output keeps its header (affine, sform/qform codes).
    transforms : sequence of str or pathlib.Path
        ANTs transform files in ``antsApplyTransforms -t`` order (for smriflow's composites, one file).
    out_file : str or pathlib.Path
        Output NIfTI path.
    interpolation : str
        One of :data:`INTERPOLATIONS`. ``genericLabel`` (label images: each voxel takes the label whose
        linearly interpolated indicator is largest) and ``nearestNeighbor`` round the result and store it
        as the smallest integer type that holds the labels; other interpolators write ``float32``.
    default_value : float
        Value of output voxels that map outside ``in_file``.
    num_threads : int
        ITK threads.

    Returns
    -------
    pathlib.Path
        ``out_file``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"'interpolation' must be one of {set(INTERPOLATIONS)}. {interpolation!r} was provided."
        )
    transforms = [str(t) for t in transforms]
    if not transforms:
        raise ValueError("'transforms' must list at least one transform file. [] was provided.")
    for tx in transforms:
        if not Path(tx).is_file():
            raise FileNotFoundError(f"'transforms' names a file that does not exist: {tx}")
    ants = import_ants(num_threads)
    moving = ants.image_read(str(in_file))
    if moving.dimension != 3:
        raise ValueError(f"'in_file' must be a 3-D image. {in_file} has {moving.dimension} dimensions.")
    warped = ants.apply_transforms(
        fixed=ants.image_read(str(reference)),
        moving=moving,
        transformlist=transforms,
        interpolator=interpolation,
        defaultvalue=default_value,
        whichtoinvert=[False] * len(transforms),
    ).numpy()
    if interpolation in _LABEL_INTERPOLATIONS:
        return write_labels(np.rint(warped), reference, out_file)
    image_like(warped, nb.load(str(reference)), np.float32, copy_header=True).to_filename(str(out_file))
    return Path(out_file)


def _binary(image, above: float):
    """A float 0/1 ANTsImage of ``image > above`` (same grid)."""
    return image.new_image_like((image.numpy() > above).astype(np.float32))


def _rewrite_composite(path: Path) -> dict[str, np.ndarray]:
    """Rewrite an ITK composite-transform HDF5 file in place, reproducibly, and return its datasets.

    ITK's HDF5 writer records object modification times, so two identical registrations would give different
    bytes. The rewritten file has the same groups, datasets and types, without time stamps and without gzip
    (the displacement field compresses by only ~20 %, and compressing costs ~3 s at 1 mm); ITK/ANTs read it
    the same way (tested).

    Returns
    -------
    dict
        Every dataset, by its path in the file (e.g. ``"TransformGroup/2/TransformParameters"``).
    """
    import h5py  # dependency of nitransforms (niworkflows); only needed here

    found: dict[str, np.ndarray] = {}

    def group_plist():
        plist = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        plist.set_obj_track_times(False)
        return plist

    def copy(src, dst) -> None:
        for name, obj in src.items():
            if isinstance(obj, h5py.Group):
                h5py.h5g.create(dst.id, name.encode(), gcpl=group_plist())
                copy(obj, dst[name])
            else:
                found[obj.name.lstrip("/")] = data = obj[()]
                dst.create_dataset(name, data=data, dtype=obj.dtype, track_times=False)
            for key, value in obj.attrs.items():
                dst[name].attrs[key] = value

    def rewrite(tmp: str) -> None:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
            copy(src, dst)

    atomic_write(path, rewrite)
    return found


def _composite_log_jacobian(datasets: dict[str, np.ndarray], reference: nb.Nifti1Image) -> nb.Nifti1Image:
    """Log-Jacobian of a [affine, displacement field] ITK composite, on the field's grid.

    ITK applies the last transform of a composite first, so template points map as ``T = A o W`` with
    ``W(p) = p + u(p)``: ``det DT(p) = det(A) det(I + du/dp)``. (Checked against ANTs' own composition of
    the file into one displacement field: relative difference < 2e-6.)
    """
    types = {
        key.split("/")[1]: value[0].decode() if isinstance(value[0], bytes) else str(value[0])
        for key, value in datasets.items()
        if key.endswith("TransformType")
    }
    affine = [k for k, t in types.items() if t.startswith("AffineTransform")]
    field = [k for k, t in types.items() if t.startswith("DisplacementFieldTransform")]
    if len(affine) != 1 or len(field) != 1 or int(affine[0]) > int(field[0]):
        raise ValueError(f"Expected a composite [affine, displacement field]; found {types}.")
    matrix = np.asarray(datasets[f"TransformGroup/{affine[0]}/TransformParameters"][:9], dtype=np.float64)
    fixed = np.asarray(datasets[f"TransformGroup/{field[0]}/TransformFixedParameters"], dtype=np.float64)
    size = fixed[:3].astype(int)
    to_lps = np.eye(4)
    to_lps[:3, :3] = fixed[9:18].reshape(3, 3) * fixed[6:9]
    to_lps[:3, 3] = fixed[3:6]
    params = datasets[f"TransformGroup/{field[0]}/TransformParameters"]
    disp = np.asarray(params, dtype=np.float32).reshape(size[2], size[1], size[0], 3).transpose(2, 1, 0, 3)
    field_img = nb.Nifti1Image(disp, np.diag([-1.0, -1.0, 1.0, 1.0]) @ to_lps)
    return log_jacobian_image(field_img, reference, linear_det=float(np.linalg.det(matrix.reshape(3, 3))))


def _crop_to_mask(image, mask, margin_mm: float, ants):
    """Crop an ANTsImage and its mask to the mask's bounding box plus ``margin_mm`` (physical space kept)."""
    margin = max(1, int(np.ceil(margin_mm / min(mask.spacing))))
    box = bounding_box(mask.numpy() > 0, margin)
    lo, hi = tuple(s.start for s in box), tuple(s.stop for s in box)
    return ants.crop_indices(image, lo, hi), ants.crop_indices(mask, lo, hi)


def normalize_to_template(
    in_file: str | Path,
    template: str | Path,
    out_dir: str | Path,
    *,
    in_mask: str | Path | None = None,
    template_mask: str | Path | None = None,
    init_affine: str | Path | None = None,
    space: str = DEFAULT_TEMPLATE,
    preset: str | RegistrationPreset = "fast",
    seed: int = DEFAULT_SEED,
    num_threads: int = 1,
) -> NormalizationResult:
    """Register a brain-extracted T1w image to a template: affine, then SyN.

    Parameters
    ----------
    in_file : str or pathlib.Path
        Brain-extracted (or at least brain-masked through ``in_mask``) T1w image in native space.
    template : str or pathlib.Path
        Skull-stripped template T1w; its grid is the output grid (see ``preset.template_resolution``).
    out_dir : str or pathlib.Path
        Folder for every output and for the per-call ANTs folders ``_affine/`` and ``_syn/``.
    in_mask : str or pathlib.Path, optional
        Subject brain mask on the grid of ``in_file``; ``in_file > 0`` when omitted. The moving image is
        multiplied by it and cropped to it.
    template_mask : str or pathlib.Path, optional
        Template brain mask (metric mask of the affine stage and moments initializer); ``template > 0`` when
        omitted.
    init_affine : str or pathlib.Path, optional
        An ANTs affine (``.mat``/``.txt``) from this subject to the same template (e.g. computed during brain
        extraction), i.e. a forward transform of ``ants.registration(fixed=template, moving=subject)``. When
        given, the affine stage is skipped and SyN starts from it.
    space : str
        Template name for the output file names (``space-<space>``).
    preset : str or RegistrationPreset
        ``"fast"``, ``"precise"``, ``"testing"`` or a :class:`RegistrationPreset`.
    seed : int
        ANTs random seed (metric sampling).
    num_threads : int
        ITK threads (fixed per process; see :func:`smriflow.utils.antsenv.import_ants`).

    Returns
    -------
    NormalizationResult
        Paths of the warped image, both composite transforms, the affine and the log-Jacobian map.
    """
    params = get_preset(preset)
    if init_affine is not None and Path(init_affine).suffix not in (".mat", ".txt"):
        raise ValueError(
            "'init_affine' must be an ANTs affine transform file (.mat or .txt). "
            f"{init_affine!s} was provided."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ants = import_ants(num_threads)

    fixed = ants.image_read(str(template))
    if template_mask is not None:
        fixed_mask = _binary(ants.image_read(str(template_mask)), 0.5)
    else:
        fixed_mask = _binary(fixed, 0.0)
    moving = ants.image_read(str(in_file))
    if moving.dimension != 3:
        raise ValueError(f"'in_file' must be a 3-D image. {in_file} has {moving.dimension} dimensions.")
    if in_mask is not None:
        moving_mask = ants.image_read(str(in_mask))
        if moving_mask.shape != moving.shape:
            raise ValueError(
                "'in_mask' must be on the grid of 'in_file'. "
                f"Shapes {moving_mask.shape} and {moving.shape} differ."
            )
        moving_mask = _binary(moving_mask, 0.5)
    else:
        moving_mask = _binary(moving, 0.0)
    if moving_mask.sum() == 0:
        raise ValueError(f"The subject brain mask is empty ('in_mask'={in_mask!s}, 'in_file'={in_file!s}).")
    moving = moving * moving_mask
    moving, moving_mask = _crop_to_mask(moving, moving_mask, params.crop_margin_mm, ants)

    with ants_seed(ants, seed):
        if init_affine is None:
            init = moments_initializer(fixed_mask, moving_mask, out_dir / "init_moments.mat", ants)
            aff = ants.registration(
                fixed=fixed,
                moving=moving,
                type_of_transform="Affine",
                initial_transform=str(init),
                outprefix=registration_dir(out_dir, "_affine"),
                mask=fixed_mask,
                moving_mask=moving_mask,
                aff_metric=params.affine_metric,
                aff_random_sampling_rate=params.affine_sampling_rate,
                aff_iterations=tuple(params.affine_iterations),
                aff_shrink_factors=tuple(params.affine_shrink_factors),
                aff_smoothing_sigmas=tuple(params.affine_smoothing_sigmas),
            )
            affine_src = Path(aff["fwdtransforms"][0])
        else:
            affine_src = Path(init_affine)
        affine = out_dir / f"from-T1w_to-{space}_mode-image_desc-affine_xfm.mat"
        if affine_src.resolve() != affine.resolve():
            shutil.copyfile(affine_src, affine)
        syn = ants.registration(
            fixed=fixed,
            moving=moving,
            type_of_transform="SyNOnly",
            initial_transform=str(affine),
            outprefix=registration_dir(out_dir, "_syn"),
            syn_metric=params.syn_metric,
            syn_sampling=params.syn_sampling,
            reg_iterations=tuple(params.syn_iterations),
            grad_step=params.grad_step,
            flow_sigma=params.flow_sigma,
            total_sigma=params.total_sigma,
            write_composite_transform=True,
        )

    fwd_name, inv_name = transform_names(space)
    forward, inverse = out_dir / fwd_name, out_dir / inv_name
    shutil.move(syn["fwdtransforms"], forward)
    shutil.move(syn["invtransforms"], inverse)
    forward_datasets = _rewrite_composite(forward)
    _rewrite_composite(inverse)
    for folder in ("_syn", "_affine"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)

    tpl_img = nb.load(str(template))
    warped = out_dir / f"space-{space}_desc-preproc_T1w.nii.gz"
    image_like(syn["warpedmovout"].numpy(), tpl_img, np.float32, copy_header=True).to_filename(str(warped))

    log_jacobian = out_dir / f"space-{space}_desc-logjacobian_T1w.nii.gz"
    _composite_log_jacobian(forward_datasets, tpl_img).to_filename(str(log_jacobian))
    return NormalizationResult(
        warped=warped,
        forward_transform=forward,
        inverse_transform=inverse,
        affine=affine,
        log_jacobian=log_jacobian,
    )
