"""smriflow.data.surfaces and the thickness reportlet (smriflow.reports.surfaces).

The shared data has no surfaces (only FreeSurfer's mri/ volumes), so these tests use nilearn's packaged
fsaverage5 meshes and thickness (10242 vertices per hemisphere), written out as a FreeSurfer subject folder
and as fMRIPrep GIFTI files, plus a tiny octahedron for the error paths.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from smriflow.data.surfaces import (
    Annotation,
    Mesh,
    find_surfaces,
    load_annotation,
    load_mesh,
    load_morphometry,
    regional_mean,
)
from smriflow.reports.surfaces import subject_thickness_svg, thickness_range, thickness_svg

FSAVERAGE5 = Path(nb.__file__).parents[1] / "nilearn" / "datasets" / "data" / "fsaverage5"


def _read_gifti(name: str) -> nb.gifti.GiftiImage:
    return nb.gifti.GiftiImage.from_bytes(gzip.decompress((FSAVERAGE5 / name).read_bytes()))


@pytest.fixture(scope="module")
def fsaverage5() -> dict[str, tuple[Mesh, np.ndarray]]:
    """Pial mesh and thickness of each fsaverage5 hemisphere, from nilearn's package data."""
    if not FSAVERAGE5.is_dir():
        pytest.skip(f"nilearn's fsaverage5 is not at {FSAVERAGE5}")
    out = {}
    for hemi in ("left", "right"):
        pial = _read_gifti(f"pial_{hemi}.gii.gz")
        coords = pial.get_arrays_from_intent("NIFTI_INTENT_POINTSET")[0].data
        faces = pial.get_arrays_from_intent("NIFTI_INTENT_TRIANGLE")[0].data
        thickness = _read_gifti(f"thick_{hemi}.gii.gz").darrays[0].data
        out[hemi] = (Mesh(np.asarray(coords, np.float64), np.asarray(faces, np.int64)), thickness)
    return out


def _two_region_annot(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Label vertices 'unknown' (x = 0 plane side unused), 'anterior' (y > 0) and 'posterior'."""
    labels = np.where(mesh.coords[:, 1] > 0, 1, 2).astype(np.int32)
    labels[:10] = 0
    ctab = np.array([[25, 5, 25, 0, 0], [220, 20, 10, 0, 0], [20, 30, 140, 0, 0]], dtype=np.int32)
    ctab[:, 4] = ctab[:, 0] + ctab[:, 1] * 2**8 + ctab[:, 2] * 2**16
    return labels, ctab, ["unknown", "anterior", "posterior"]


def write_freesurfer_subject(folder: Path, surfaces: dict[str, tuple[Mesh, np.ndarray]]) -> Path:
    for hemi, prefix in (("left", "lh"), ("right", "rh")):
        mesh, thickness = surfaces[hemi]
        (folder / "surf").mkdir(parents=True, exist_ok=True)
        (folder / "label").mkdir(exist_ok=True)
        nb.freesurfer.write_geometry(str(folder / "surf" / f"{prefix}.pial"), mesh.coords, mesh.faces)
        # a FastSurfer-style name (lh.white.T1 instead of lh.white)
        nb.freesurfer.write_geometry(
            str(folder / "surf" / f"{prefix}.white.T1"), mesh.coords * 0.98, mesh.faces
        )
        nb.freesurfer.write_morph_data(str(folder / "surf" / f"{prefix}.thickness"), thickness)
        labels, ctab, names = _two_region_annot(mesh)
        nb.freesurfer.write_annot(str(folder / "label" / f"{prefix}.aparc.annot"), labels, ctab, names)
    return folder


def write_fmriprep_subject(folder: Path, surfaces: dict[str, tuple[Mesh, np.ndarray]]) -> Path:
    anat = folder / "anat"
    anat.mkdir(parents=True)
    for hemi, bids in (("left", "L"), ("right", "R")):
        mesh, thickness = surfaces[hemi]
        gii = nb.gifti.GiftiImage()
        gii.add_gifti_data_array(
            nb.gifti.GiftiDataArray(mesh.coords.astype(np.float32), "NIFTI_INTENT_POINTSET")
        )
        gii.add_gifti_data_array(
            nb.gifti.GiftiDataArray(mesh.faces.astype(np.int32), "NIFTI_INTENT_TRIANGLE")
        )
        nb.save(gii, anat / f"sub-01_hemi-{bids}_pial.surf.gii")
        shape = nb.gifti.GiftiImage(darrays=[nb.gifti.GiftiDataArray(thickness.astype(np.float32))])
        nb.save(shape, anat / f"sub-01_hemi-{bids}_thickness.shape.gii")
        nb.save(
            shape, anat / f"sub-01_hemi-{bids}_space-fsaverage_thickness.shape.gii"
        )  # not native: skipped
    return folder


def test_freesurfer_folder_reads_back_what_was_written(tmp_path, fsaverage5):
    folder = write_freesurfer_subject(tmp_path / "sub-01", fsaverage5)
    found = find_surfaces(folder)
    assert sorted(found) == ["left", "right"]
    assert sorted(found["left"]) == ["annot:aparc", "pial", "thickness", "white"]
    assert found["left"]["white"].name == "lh.white.T1"  # FastSurfer's name is accepted
    mesh, thickness = fsaverage5["left"]
    pial = load_mesh(found["left"]["pial"])
    assert pial.n_vertices == 10242 and np.allclose(pial.coords, mesh.coords, atol=1e-4)
    assert np.array_equal(pial.faces, mesh.faces)
    read = load_morphometry(found["left"]["thickness"], pial.n_vertices)
    assert np.allclose(read, thickness, atol=1e-6)
    annot = load_annotation(found["left"]["annot:aparc"], pial.n_vertices)
    expected, _, names = _two_region_annot(mesh)
    assert annot.names == names and np.array_equal(annot.labels, expected)
    assert np.allclose(annot.colors[1], [220 / 255, 20 / 255, 10 / 255, 1.0])


def test_fmriprep_folder_reads_back_what_was_written(tmp_path, fsaverage5):
    found = find_surfaces(write_fmriprep_subject(tmp_path / "sub-01", fsaverage5))
    assert {hemi: sorted(files) for hemi, files in found.items()} == {
        "left": ["pial", "thickness"],
        "right": ["pial", "thickness"],
    }
    assert "space-" not in found["right"]["thickness"].name
    mesh, thickness = fsaverage5["right"]
    pial = load_mesh(found["right"]["pial"])
    assert np.allclose(pial.coords, mesh.coords, atol=1e-4) and np.array_equal(pial.faces, mesh.faces)
    assert np.allclose(load_morphometry(found["right"]["thickness"]), thickness, atol=1e-6)


def test_label_gifti_annotation_maps_keys_to_names(tmp_path):
    table = nb.gifti.GiftiLabelTable()
    for key, name in ((0, "???"), (7, "precentral"), (9, "insula")):
        label = nb.gifti.GiftiLabel(key=key, red=0.5, green=0.1, blue=0.2, alpha=1.0)
        label.label = name
        table.labels.append(label)
    data = np.array([7, 9, 9, 0, 3], dtype=np.int32)  # 3 is not in the table
    gii = nb.gifti.GiftiImage(labeltable=table, darrays=[nb.gifti.GiftiDataArray(data, "NIFTI_INTENT_LABEL")])
    nb.save(gii, tmp_path / "sub-01_hemi-L_desc-aparc_dseg.label.gii")
    annot = load_annotation(tmp_path / "sub-01_hemi-L_desc-aparc_dseg.label.gii")
    assert annot.names == ["???", "precentral", "insula"]
    assert annot.labels.tolist() == [1, 2, 2, 0, -1]
    assert regional_mean(np.array([2.0, 3.0, 5.0, 9.0, 9.0]), annot) == {"precentral": 2.0, "insula": 4.0}


def test_regional_mean_skips_the_medial_wall_and_nans():
    annot = Annotation(np.array([0, 1, 1, 2, -1]), ["unknown", "a", "b"], np.ones((3, 4)))
    assert regional_mean(np.array([9.0, 1.0, np.nan, 4.0, 7.0]), annot) == {"a": 1.0, "b": 4.0}
    with pytest.raises(ValueError, match="4 values for a parcellation of 5 vertices"):
        regional_mean(np.zeros(4), annot)


OCTAHEDRON = Mesh(
    np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64),
    np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]),
)


def test_errors_name_the_file_and_the_problem(tmp_path):
    path = tmp_path / "lh.pial"
    nb.freesurfer.write_geometry(str(path), OCTAHEDRON.coords, OCTAHEDRON.faces)
    nb.freesurfer.write_morph_data(str(tmp_path / "lh.thickness"), np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"lh.thickness: 5 values for a mesh of 6 vertices"):
        load_morphometry(tmp_path / "lh.thickness", load_mesh(path).n_vertices)
    (tmp_path / "rh.pial").write_bytes(b"not a mesh")
    with pytest.raises(ValueError, match=r"rh.pial: not a readable surface mesh"):
        load_mesh(tmp_path / "rh.pial")
    bad_faces = nb.gifti.GiftiImage()
    bad_faces.add_gifti_data_array(
        nb.gifti.GiftiDataArray(OCTAHEDRON.coords.astype(np.float32), "NIFTI_INTENT_POINTSET")
    )
    bad_faces.add_gifti_data_array(
        nb.gifti.GiftiDataArray(np.array([[0, 1, 6]], np.int32), "NIFTI_INTENT_TRIANGLE")
    )
    nb.save(bad_faces, tmp_path / "bad.surf.gii")
    with pytest.raises(ValueError, match=r"bad.surf.gii: a triangle names vertex 6 of a 6-vertex mesh"):
        load_mesh(tmp_path / "bad.surf.gii")
    with pytest.raises(FileNotFoundError, match=r"no surfaces found \(neither surf/lh.pial"):
        find_surfaces(tmp_path)


def test_thickness_reportlet_draws_four_views_deterministically(tmp_path, fsaverage5):
    folder = write_freesurfer_subject(tmp_path / "sub-01", fsaverage5)
    svg = subject_thickness_svg(folder)
    assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    for label in ("left lateral", "left medial", "right lateral", "right medial"):
        assert label in svg
    assert svg == thickness_svg(fsaverage5)  # same data, byte-identical SVG
    low, high = thickness_range({h: t for h, (_, t) in fsaverage5.items()})
    assert 0.0 < low < 1.5 < high < 5.0  # fsaverage5's cortical thickness, mm


def test_thickness_reportlet_refuses_a_mismatched_map(fsaverage5):
    mesh, thickness = fsaverage5["left"]
    with pytest.raises(ValueError, match="left thickness has 10 values for a mesh of 10242 vertices"):
        thickness_svg({"left": (mesh, thickness[:10])})
    with pytest.raises(ValueError, match=r"'hemispheres' keys must be 'left' and/or 'right'"):
        thickness_svg({"lh": (mesh, thickness)})
