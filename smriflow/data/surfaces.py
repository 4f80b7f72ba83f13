"""Read cortical surfaces from FreeSurfer / FastSurfer subject folders and fMRIPrep GIFTI outputs.

Everything is read with nibabel and returned as plain arrays:

- meshes (``pial``, ``white``, ``inflated``, ...): :func:`load_mesh` → :class:`Mesh` (vertex coordinates in
  mm and triangles), from FreeSurfer geometry files (``surf/lh.pial``) or GIFTI (``*.surf.gii``);
- per-vertex maps (``thickness``, ``sulc``, ``curv``, ``area``): :func:`load_morphometry`, from FreeSurfer
  "curv" files (``surf/lh.thickness``), MGH (``*.mgh/.mgz``) or GIFTI (``*.shape.gii``/``*.func.gii``);
- parcellations: :func:`load_annotation` → :class:`Annotation`, from ``.annot`` or ``*.label.gii``.

:func:`find_surfaces` lists what a folder holds per hemisphere, whichever of the layouts it has:

- FreeSurfer (``<subject>/surf/lh.pial``, ``<subject>/label/lh.aparc.annot``) and FastSurfer, which writes the
  same layout (``lh.pial`` may be a link to, or missing beside, ``lh.pial.T1``; parcellations are
  ``lh.aparc.DKTatlas.mapped.annot``);
- fMRIPrep / sMRIPrep (``anat/sub-01_hemi-L_pial.surf.gii``, ``sub-01_hemi-L_thickness.shape.gii``).

:func:`regional_mean` averages a map in each region of a parcellation (e.g. thickness per Desikan-Killiany
region), skipping the medial wall / "unknown".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np

__all__ = [
    "HEMIS",
    "MESHES",
    "MORPHOMETRY",
    "Annotation",
    "Mesh",
    "find_surfaces",
    "load_annotation",
    "load_mesh",
    "load_morphometry",
    "regional_mean",
]

#: hemisphere name → (FreeSurfer prefix, BIDS ``hemi`` entity)
HEMIS = {"left": ("lh", "L"), "right": ("rh", "R")}
#: meshes looked for, in ``surf/`` (FreeSurfer) or as ``*_<name>.surf.gii`` (fMRIPrep)
MESHES = ("pial", "white", "inflated", "midthickness", "sphere")
#: per-vertex maps looked for, in ``surf/`` or as ``*_<name>.shape.gii``
MORPHOMETRY = ("thickness", "sulc", "curv", "area")
#: FreeSurfer / FastSurfer parcellations (``label/<h>.<name>.annot``), reported without ``.mapped``
ANNOTATIONS = ("aparc", "aparc.a2009s", "aparc.DKTatlas", "aparc.DKTatlas.mapped")
#: region names that are not cortex (skipped by :func:`regional_mean`)
NON_CORTEX = frozenset({"unknown", "medialwall", "Medial_wall", "corpuscallosum", "???"})


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``coords`` (n, 3) float64 in mm, ``faces`` (m, 3) int64 vertex indices."""

    coords: np.ndarray
    faces: np.ndarray

    @property
    def n_vertices(self) -> int:
        return int(self.coords.shape[0])


@dataclass(frozen=True)
class Annotation:
    """A per-vertex parcellation: ``labels`` (n,) indices into ``names`` (-1 = none) and RGBA ``colors``."""

    labels: np.ndarray
    names: list[str]
    colors: np.ndarray


def _is_gifti(path: Path) -> bool:
    return path.name.endswith((".gii", ".gii.gz"))


def _gifti(path: Path) -> nb.gifti.GiftiImage:
    if path.name.endswith(".gz"):
        import gzip

        return nb.gifti.GiftiImage.from_bytes(gzip.decompress(path.read_bytes()))
    return nb.load(path)


def load_mesh(path: str | Path) -> Mesh:
    """Read a surface mesh (FreeSurfer geometry file or GIFTI ``*.surf.gii``).

    Raises
    ------
    ValueError
        When the file is not a triangle mesh, or a triangle names a vertex the mesh does not have.
    """
    path = Path(path)
    try:
        if _is_gifti(path):
            image = _gifti(path)
            points = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")
            triangles = image.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")
            if not points or not triangles:
                raise ValueError("the GIFTI file has no POINTSET and TRIANGLE arrays")
            coords, faces = points[0].data, triangles[0].data
        else:
            coords, faces = nb.freesurfer.read_geometry(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable surface mesh ({exc}).") from exc
    coords = np.asarray(coords, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{path}: not a triangle mesh (vertices {coords.shape}, faces {faces.shape}).")
    if faces.size and (faces.min() < 0 or faces.max() >= coords.shape[0]):
        raise ValueError(
            f"{path}: a triangle names vertex {int(faces.max())} of a {coords.shape[0]}-vertex mesh."
        )
    return Mesh(coords, faces)


def load_morphometry(path: str | Path, n_vertices: int | None = None) -> np.ndarray:
    """Read a per-vertex map (FreeSurfer curv file, MGH/MGZ, or GIFTI) as a float64 vector.

    Parameters
    ----------
    path : str or Path
        The file.
    n_vertices : int, optional
        The mesh's vertex count, to check the map against.
    """
    path = Path(path)
    try:
        if _is_gifti(path):
            arrays = _gifti(path).darrays
            if not arrays:
                raise ValueError("the GIFTI file has no data array")
            values = arrays[0].data
        elif path.name.endswith((".mgh", ".mgz")):
            values = np.asarray(nb.load(path).dataobj)
        else:
            values = nb.freesurfer.read_morph_data(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable per-vertex map ({exc}).") from exc
    values = np.asarray(values, dtype=np.float64).squeeze()
    if values.ndim != 1:
        raise ValueError(
            f"{path}: a per-vertex map must be one value per vertex; its shape is {values.shape}."
        )
    if n_vertices is not None and values.size != n_vertices:
        raise ValueError(f"{path}: {values.size} values for a mesh of {n_vertices} vertices.")
    return values


def load_annotation(path: str | Path, n_vertices: int | None = None) -> Annotation:
    """Read a parcellation (FreeSurfer ``.annot`` or GIFTI ``*.label.gii``).

    Names are ``str``; vertices without a region get label -1.
    """
    path = Path(path)
    try:
        if _is_gifti(path):
            image = _gifti(path)
            if not image.darrays:
                raise ValueError("the GIFTI file has no data array")
            keys = np.asarray(image.darrays[0].data, dtype=np.int64)
            table = image.labeltable.labels
            codes = np.array([label.key for label in table], dtype=np.int64)
            names = [str(label.label) for label in table]
            colors = np.array([label.rgba for label in table], dtype=np.float64).reshape(-1, 4)
        else:
            keys, ctab, raw_names = nb.freesurfer.read_annot(str(path))
            keys = np.asarray(keys, dtype=np.int64)
            names = [name.decode() if isinstance(name, bytes) else str(name) for name in raw_names]
            colors = np.asarray(ctab[:, :4], dtype=np.float64) / 255.0
            colors[:, 3] = 1.0
            codes = np.arange(len(names), dtype=np.int64)  # read_annot already maps to indices (-1: none)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable parcellation ({exc}).") from exc
    lookup = {int(code): index for index, code in enumerate(codes)}
    labels = np.array([lookup.get(int(key), -1) for key in keys], dtype=np.int64)
    if n_vertices is not None and labels.size != n_vertices:
        raise ValueError(f"{path}: {labels.size} labels for a mesh of {n_vertices} vertices.")
    return Annotation(labels, names, colors)


def _freesurfer_files(folder: Path) -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    for hemi, (prefix, _) in HEMIS.items():
        files: dict[str, Path] = {}
        for name in (*MESHES, *MORPHOMETRY):
            for candidate in (f"{prefix}.{name}", f"{prefix}.{name}.T1"):  # FastSurfer: lh.pial.T1
                path = folder / "surf" / candidate
                if path.is_file():
                    files[name] = path
                    break
        for name in ANNOTATIONS:
            path = folder / "label" / f"{prefix}.{name}.annot"
            if path.is_file():
                files.setdefault(f"annot:{name.removesuffix('.mapped')}", path)
        if files:
            found[hemi] = files
    return found


_GIFTI = re.compile(r"_hemi-(?P<hemi>[LR])_(?:.*_)?(?P<name>[a-z]+)\.(?P<kind>surf|shape|func|label)\.gii$")


def _gifti_files(folder: Path) -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    side = {bids: hemi for hemi, (_, bids) in HEMIS.items()}
    for path in sorted(folder.rglob("*_hemi-*.gii")):
        match = _GIFTI.search(path.name)
        if match is None or "space-" in path.name:  # native-space surfaces only
            continue
        name, kind = match["name"], match["kind"]
        if kind == "surf" and name in MESHES or kind in ("shape", "func") and name in MORPHOMETRY:
            key = name
        elif kind == "label":
            key = f"annot:{name}"
        else:
            continue
        found.setdefault(side[match["hemi"]], {}).setdefault(key, path)
    return found


def find_surfaces(folder: str | Path) -> dict[str, dict[str, Path]]:
    """List the surface files of one subject, per hemisphere.

    Parameters
    ----------
    folder : str or Path
        A FreeSurfer / FastSurfer subject folder (with ``surf/``), or an fMRIPrep / sMRIPrep subject (or
        ``anat``) folder with ``*_hemi-L_*.surf.gii`` files.

    Returns
    -------
    dict
        ``{"left": {"pial": Path, "thickness": Path, "annot:aparc": Path, ...}, "right": {...}}``, with
        only what exists (meshes from :data:`MESHES`, maps from :data:`MORPHOMETRY`, ``annot:<name>``).

    Raises
    ------
    FileNotFoundError
        When the folder has neither layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder.")
    found = _freesurfer_files(folder) if (folder / "surf").is_dir() else _gifti_files(folder)
    if not found:
        raise FileNotFoundError(
            f"{folder}: no surfaces found (neither surf/lh.pial as FreeSurfer/FastSurfer write it, nor "
            "*_hemi-L_pial.surf.gii as fMRIPrep writes it)."
        )
    return found


def regional_mean(values: np.ndarray, annotation: Annotation) -> dict[str, float]:
    """Mean of a per-vertex map in each region of a parcellation (cortex only, NaNs ignored).

    Returns
    -------
    dict of str to float
        Region name → mean, in the parcellation's order; regions without vertices are left out, and so are
        the non-cortical ones (:data:`NON_CORTEX`).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != annotation.labels.shape:
        raise ValueError(f"{values.size} values for a parcellation of {annotation.labels.size} vertices.")
    out = {}
    for index, name in enumerate(annotation.names):
        if name in NON_CORTEX:
            continue
        inside = (annotation.labels == index) & np.isfinite(values)
        if inside.any():
            out[name] = float(values[inside].mean())
    return out
