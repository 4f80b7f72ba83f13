"""The ``slurm_cluster`` fixture: the running SLURM cluster (tests/slurm/cluster.sh), or skip / fail.

Tests that need a live cluster take this fixture and carry ``pytestmark`` ``slurm``. Without a cluster they
are skipped with the reason; with ``SMRIFLOW_REQUIRE_SLURM=1`` (set by ``.ci/run``, which starts the
cluster) they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRE_ENV = "SMRIFLOW_REQUIRE_SLURM"
CLUSTER_SCRIPT = Path(__file__).with_name("cluster.sh")


def cluster_problem() -> str | None:
    """Why no cluster can run jobs here, or ``None`` when one answers with a usable node."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo not found"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo gave no answer within 30 s"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"sinfo exit code {done.returncode}"])[-1]
    states = done.stdout.split()
    if not any(state.rstrip("*~#") in ("idle", "mix", "alloc", "comp") for state in states):
        return f"no node is up (sinfo: {' '.join(states) or 'no nodes'})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skip (locally) or fail (CI) when no SLURM cluster is running."""
    problem = cluster_problem()
    if problem is not None:
        message = f"no SLURM cluster: {problem}. Start one with `bash {CLUSTER_SCRIPT} start`"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
