"""Tests for smriflow.utils.metrics: Dice, CJV and the FreeSurfer tissue-class mapping."""

from __future__ import annotations

import numpy as np
import pytest

from smriflow.utils.metrics import FS_TISSUE_LABELS, cjv, dice, fs_tissue_classes


def test_dice_values():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros_like(a)
    a[:2] = True
    b[1:3] = True
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros(3), np.zeros(3)) == 1.0  # both empty: they agree
    assert dice(a.astype(np.uint8) * 3, b.astype(float)) == pytest.approx(0.5)  # nonzero = inside


def test_dice_shape_mismatch():
    with pytest.raises(ValueError, match=r"dice: the masks' shapes differ: \(2,\) and \(3,\)\."):
        dice(np.ones(2), np.ones(3))


def test_fs_mapping_matches_issue():
    assert FS_TISSUE_LABELS["GM"] == (
        3,
        42,
        8,
        47,
        10,
        49,
        11,
        50,
        12,
        51,
        13,
        52,
        17,
        53,
        18,
        54,
        26,
        58,
        28,
        60,
    )
    assert FS_TISSUE_LABELS["WM"] == (2, 41, 7, 46, 16, 77, 85, 251, 252, 253, 254, 255)
    assert FS_TISSUE_LABELS["CSF"] == (4, 5, 14, 15, 43, 44, 24, 72)


def test_fs_tissue_classes_every_label():
    labels = np.arange(0, 260).reshape(1, 1, -1)
    classes = fs_tissue_classes(labels)
    assert set(classes) == {"GM", "WM", "CSF"}
    for name, codes in FS_TISSUE_LABELS.items():
        assert classes[name].dtype == bool and classes[name].shape == labels.shape
        assert sorted(labels[classes[name]].tolist()) == sorted(codes)
    # disjoint; background, choroid plexus (31/63), vessels (30/62) and unknown codes are in no class
    total = classes["GM"].astype(int) + classes["WM"] + classes["CSF"]
    assert total.max() == 1
    for code in (0, 30, 31, 62, 63, 80, 256):
        assert total[0, 0, code] == 0


def test_fs_tissue_classes_float_labels():
    classes = fs_tissue_classes(np.array([2.0, 3.0, 4.0]))
    assert classes["WM"].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="'aseg' must hold integer labels"):
        fs_tissue_classes(np.array([2.5]))


def test_cjv():
    rng = np.random.default_rng(0)
    image = np.concatenate([rng.normal(100, 5, 1000), rng.normal(150, 5, 1000)])
    gm = np.arange(2000) < 1000
    assert cjv(image, gm, ~gm) == pytest.approx(10 / 50, rel=0.05)
    with pytest.raises(ValueError, match="at least 2 voxels"):
        cjv(image, np.zeros(2000, bool), ~gm)
