"""Run neuroHarmonize's ``harmonizationLearn`` on arrays saved by smriflow; a standalone script (no smriflow).

neuroHarmonize 2.5.2 pins numpy < 2 and pandas < 3, so it lives in its own environment::

    python3.11 -m venv /tmp/nh && /tmp/nh/bin/pip install neuroHarmonize==2.5.2 statsmodels==0.15.0
    /tmp/nh/bin/python bench/neuroharmonize_reference.py IN.npz OUT.npz

``IN.npz`` holds ``values`` (subjects × features), ``sites`` (strings), ``covariates`` (subjects × k, may
have 0 columns), ``covariate_names``, ``smooth_terms`` (names among them), ``eb`` and ``seed`` (−1: None).
``OUT.npz`` gets ``harmonized``, ``gamma_star`` and ``delta_star``. Used by ``bench/harmonize.py`` and to
write the reference tables of ``tests/stats/data/harmonize/``.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from neuroHarmonize import harmonizationLearn


def main(source: str, target: str) -> None:
    data = np.load(source, allow_pickle=False)
    names = [str(n) for n in data["covariate_names"]]
    covars = pd.DataFrame(data["covariates"].reshape(len(data["sites"]), -1), columns=names)
    covars.insert(0, "SITE", [str(s) for s in data["sites"]])
    seed = int(data["seed"])
    model, harmonized = harmonizationLearn(
        np.asarray(data["values"], dtype=float),
        covars,
        eb=bool(data["eb"]),
        smooth_terms=[str(t) for t in data["smooth_terms"]],
        seed=None if seed < 0 else seed,
    )
    np.savez(target, harmonized=harmonized, gamma_star=model["gamma_star"], delta_star=model["delta_star"])


if __name__ == "__main__":
    main(*sys.argv[1:3])
