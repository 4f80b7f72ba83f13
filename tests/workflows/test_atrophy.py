"""Brain extraction and registration on a synthetic atrophy of the shared T1w (bench/atrophy.py at 3 mm).

The lateral ventricles grow ~4x and the cortex loses its outer millimetre (about a third of its volume),
made at 1 mm from the subject's FreeSurfer aseg. The bounds are a few points below what was measured
(brain-mask Dice 0.9715 -> 0.948 against FreeSurfer's brainmask; structures warped to MNI with the clean
and the atrophied transform overlap with Dice 0.89-0.99, mean 0.94), so a mask that leaks into the skull or
a registration that lands elsewhere fails them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "atrophy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("smriflow_bench_atrophy", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_synthesize_atrophy_grows_ventricles_and_thins_the_cortex_only():
    bench = _bench()
    shape = (30, 30, 30)
    aseg = np.full(shape, 2, np.int32)  # white matter
    aseg[:3], aseg[-3:] = 0, 0  # outside the brain at both ends of x
    aseg[3:6], aseg[-6:-3] = 3, 3  # 3 mm of cortex on both sides
    aseg[13:17, 13:17, 13:17] = 4  # a ventricle
    aseg[20:23, 13:17, 13:17] = 10  # a thalamus, which must stay
    data = np.select([aseg == 2, aseg == 3, aseg == 4], [100.0, 60.0, 20.0], 80.0).astype(np.float32)
    out, info = bench.synthesize_atrophy(data, aseg, (1.0, 1.0, 1.0), ventricles_mm=2.0, cortex_mm=1.0)
    changed = out != data
    # the outer millimetre of cortex (next to the outside) and WM within 2 mm of the ventricle
    assert changed[3].all() and changed[-4].all() and not changed[4:6].any() and not changed[-6:-4].any()
    assert changed[11, 15, 15] and changed[12, 15, 15] and not changed[10, 15, 15]
    assert not changed[aseg == 10].any() and not changed[aseg == 0].any()
    assert info["cortex_after_ml"] == pytest.approx(info["cortex_ml"] * 2 / 3)
    assert info["ventricles_after_ml"] > info["ventricles_ml"]
    np.testing.assert_allclose(out[changed].mean(), 20.0, atol=1)


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.ants
def test_atrophy_keeps_brain_extraction_and_registration(shared_data, tmp_path):
    bench = _bench()
    figures = bench.score(
        shared_data, tmp_path, resolution=3, profile="testing", ventricles_mm=4, cortex_mm=1
    )
    # the synthetic atrophy is severe
    assert figures["ventricles_after_ml"] > 3 * figures["ventricles_ml"]
    assert figures["cortex_after_ml"] < 0.75 * figures["cortex_ml"]
    # brain extraction: within 4 points of the clean image's Dice against FreeSurfer
    assert figures["clean_brain_dice"] > 0.96
    assert figures["atrophy_brain_dice"] > 0.93
    assert figures["brain_dice_drop"] < 0.04
    # registration: the untouched structures land where the clean image's registration puts them
    assert figures["consistency_mean"] > 0.9
    assert min(figures[f"consistency_{name}"] for name in bench.STRUCTURES) > 0.85
    assert figures["atrophy_template_mask_dice"] > 0.97
