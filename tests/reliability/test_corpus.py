"""The bad-input corpus through ``smriflow run anat_preproc``, end to end, in ONE run (plus cheap reruns).

One BIDS dataset holds the good subject (the 3 mm shared T1w), an anisotropic 1 x 1 x 5 mm one (must work,
with a warning) and ten broken ones (``_faults.CASES``). The run must print one line per broken subject
naming its file and the problem, exit with 1, print no traceback (it is in the crash files), leave no
derivative of a broken subject, and finish the two good ones. The input dataset is mounted read-only when
the test runs as root (and compared by checksums before and after in any case).

Reruns on the same work folder only re-execute the datasinks (every other node is cached), so the full
disk and the read-only output folder cost seconds. Configuration mistakes (bad YAML, unknown participant)
stop before anything runs: exit 2, one line, nothing written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import _faults
import pandas as pd
import pytest
from _helpers import run_cli

from smriflow.engine.locks import read_holder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ants,
    pytest.mark.shared,
    pytest.mark.xdist_group("reliability_corpus"),
]
BAD_SPECS = Path(__file__).resolve().parents[1] / "data" / "bad_specs"
BROKEN = [label for label in _faults.CASES if _faults.CASES[label][2] != "done"]




@contextlib.contextmanager
def mounted(kind: str, where: Path, options: str):
    """A tmpfs (``kind='tmpfs'``) or a read-only bind mount of ``kind`` at ``where``; skip when not root."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root")
    if kind == "tmpfs":
        command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]
    else:
        command = ["mount", "--bind", "-o", options, kind, str(where)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(command)}): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    source = _faults.make_dataset(root / "bids_src", list(_faults.CASES), shared_data)
    before = _faults.tree_digest(source)
    with contextlib.ExitStack() as stack:
        try:  # the dataset as a read-only mount when possible: a write into it would fail loudly
            bids = stack.enter_context(mounted(str(source), root / "bids", "ro"))
        except pytest.skip.Exception:
            bids = source
        out, work = root / "out", root / "work"
        done = _faults.smriflow(
            "run", "anat_preproc", "--bids-dir", bids, "--output-dir", out, "--work-dir", work
        )
        yield SimpleNamespace(
            root=root, bids=bids, source=source, before=before, out=out, work=work, done=done, stack=stack
        )


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


# -- the corpus run ----------------------------------------------------------------------------------------
def test_corpus_run_ends_with_one_line_per_broken_subject_and_no_traceback(corpus):
    done, bids = corpus.done, corpus.bids
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == ""
    assert "Traceback" not in done.stdout
    assert "anat_preproc_wf: 2 of 12 subject(s) done" in done.stdout
    for label in ("good", "aniso"):
        assert re.search(rf"^\s*sub-{label}\s+done\s+(\d+)/\1\s*$", done.stdout, flags=re.MULTILINE), label
    crash_files = dict(
        re.findall(r"^sub-(\w+): node .*\n  crash file: (\S+)$", done.stdout, flags=re.MULTILINE)
    )
    for label in BROKEN:
        expected = _faults.CASES[label][2]
        if label == "noT1w":
            line = (
                "sub-noT1w: no file matches required input 't1w' (datatype=anat, suffix=T1w, "
                "extension=[.nii, .nii.gz])"
            )
            assert f"\n{line}\n" in done.stdout
            continue
        node = _faults.CONFORM.format(label=label)
        # one node done: t1w_runs passes a single run through untouched, conform then refuses it
        assert re.search(
            rf"^\s*sub-{label}\s+failed\s+1/\d+\s+{re.escape(node)}\s*$", done.stdout, re.MULTILINE
        )
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        line = rf"^sub-{label}: node {re.escape(node)} failed: ValueError: {re.escape(str(path))}: {expected}"
        assert re.search(line, done.stdout, flags=re.MULTILINE), label
        crash = Path(crash_files[label]).read_text()
        assert crash.startswith(f"Node: smriflow_wf.{node}\n") and "Traceback" in crash  # it is here instead


def test_broken_subjects_leave_no_derivative_and_nothing_half_written(corpus):
    out = corpus.out
    top = {p.name for p in out.iterdir()} - {"sub-good.html", "sub-aniso.html"}  # reports of done subjects
    assert top == {"dataset_description.json", "logs", "sub-aniso", "sub-good"}
    written = files_of(out)
    assert not [name for name in written if "/." in f"/{name}"]  # no temporary or lock file left
    good = [name for name in written if name.startswith("sub-good/")]
    aniso = [name for name in written if name.startswith("sub-aniso/")]
    assert len(good) >= 44 and "sub-good/anat/sub-good_desc-preproc_T1w.nii.gz" in good
    assert aniso == [name.replace("good", "aniso") for name in good]


def test_the_anisotropic_subject_works_with_a_warning(corpus):
    anat = corpus.out / "sub-aniso" / "anat"
    sidecar = json.loads((anat / "sub-aniso_desc-preproc_T1w.json").read_text())
    assert sidecar["zooms"] == [1.0, 1.0, 5.0] and sidecar["anisotropy"] == 5.0
    warning = (
        "voxels are anisotropic (1 x 5 x 1 mm, ratio 5); tissue segmentation and normalization are less "
        "accurate than on isotropic ~1 mm data."
    )
    assert sidecar["warnings"] == [f"sub-aniso_T1w.nii.gz: {warning}"]
    log = next((corpus.out / "logs").glob("run-*.log")).read_text()
    assert f"nipype.interface WARNING: {corpus.bids}/sub-aniso/anat/sub-aniso_T1w.nii.gz: {warning}" in log
    assert (
        json.loads((corpus.out / "sub-good/anat/sub-good_desc-preproc_T1w.json").read_text())["warnings"]
        == []
    )
    # thick slices cost accuracy, not sanity: the head volume stays near the 3 mm copy's (+14.5 % measured)
    tiv = {
        label: pd.read_csv(corpus.out / f"sub-{label}/anat/sub-{label}_desc-summary_volumes.tsv", sep="\t")
        for label in ("good", "aniso")
    }
    ratio = tiv["aniso"]["tiv_mm3"].iloc[0] / tiv["good"]["tiv_mm3"].iloc[0]
    assert 0.8 < ratio < 1.25, ratio


def test_the_input_dataset_is_never_written(corpus):
    assert _faults.tree_digest(corpus.source) == corpus.before
    if corpus.bids != corpus.source:  # it was a read-only mount, and the run went through
        assert (corpus.bids / "sub-good").is_dir()


# -- reruns on the cached work folder: only the datasinks run ---------------------------------------------
def test_a_full_disk_fails_the_subject_with_the_file_named_and_leaves_only_complete_files(corpus, tmp_path):
    with mounted("tmpfs", tmp_path / "tiny", "size=2m") as tiny:
        out = tiny / "out"
        done = _faults.smriflow(
            "run", "anat_preproc", "--bids-dir", corpus.bids, "--output-dir", out, "--work-dir", corpus.work,
            "--participant-label", "good",
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        # the run's log is on the full disk too: it stops, with one line saying so
        assert re.fullmatch(
            rf"(smriflow: cannot write the log {re.escape(str(out))}/logs/run-\S+\.log "
            r"\(No space left on device\); its end is lost\n)?",
            done.stderr,
        ), done.stderr
        assert re.search(r"^\s*sub-good\s+failed\s+\d+/\d+\s+sub_good_wf\.", done.stdout, flags=re.MULTILINE)
        errors = re.findall(
            r"^sub-good: node sub_good_wf\.(\w+) failed: (.*)$", done.stdout, flags=re.MULTILINE
        )
        assert errors, done.stdout
        for _, error in errors:  # each names the file of the output folder it could not write
            assert re.match(r"OSError: \[Errno 28\] .*No space left on device", error), error
            assert re.search(rf"'{re.escape(str(out))}/[^']+'", error), error
        written = files_of(out)
        assert not [name for name in written if "/." in f"/{name}"]  # no temporary file left
        derivatives = [name for name in written if name.startswith("sub-good/")]
        # whatever was written before the disk filled is complete: byte for byte the corpus run's file
        for name in derivatives:
            assert (out / name).read_bytes() == (corpus.out / name).read_bytes(), name
        for name in derivatives:  # and no data file without its sidecar, nor the reverse
            stem = name.split(".", 1)[0]
            assert sum(other.startswith(stem + ".") for other in derivatives) == 2, name


def test_a_read_only_output_folder_is_one_line_and_exit_2(corpus, tmp_path):
    with mounted("tmpfs", tmp_path / "ro", "size=1m,ro") as readonly:
        code, out, err = run_cli(
            "run", "anat_preproc", "--bids-dir", corpus.bids, "--output-dir", readonly,
            "--work-dir", corpus.work, "--participant-label", "good",
        )  # fmt: skip
    assert code == 2
    assert err == f"--output-dir {readonly}: cannot write {readonly}/.locks (Read-only file system)\n"


# -- mistakes found before anything runs --------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["cycle", "unknown_interface", "wrong_output_port", "duplicate_key", "wrong_param_type"]
)
def test_a_broken_workflow_file_stops_the_run_at_its_line(corpus, tmp_path, name):
    spec = BAD_SPECS / f"{name}.yml"
    expected = spec.read_text().splitlines()[0].removeprefix("# expect: ")
    code, out, err = run_cli("run", spec, "--bids-dir", corpus.bids, "--output-dir", tmp_path / "out")
    assert (code, out) == (2, "")
    assert err.splitlines()[0] == f"{spec}:{expected}"
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_participant_labels_are_refused_and_cannot_name_a_path(corpus, tmp_path):
    code, out, err = run_cli(
        "run", "anat_preproc", "--bids-dir", corpus.bids, "--output-dir", tmp_path / "out",
        "--participant-label", "nobody", "../../etc",
    )  # fmt: skip
    available = ", ".join(sorted(_faults.CASES))
    assert (code, out) == (2, "")
    assert err == (
        f"participant labels 'nobody', '../../etc' not found in BIDS dataset {corpus.bids}. "
        f"Available: {available}\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_dataset_whose_subjects_have_no_t1w_writes_nothing(tmp_path):
    bids = _faults.make_dataset(tmp_path / "bids", ["noT1w"])
    code, out, err = run_cli("run", "anat_preproc", "--bids-dir", bids, "--output-dir", tmp_path / "out")
    assert (code, err) == (1, "")
    assert "sub-noT1w: no file matches required input 't1w' (datatype=anat, suffix=T1w" in out
    assert not (tmp_path / "out" / "dataset_description.json").exists()
    assert not list((tmp_path / "out").glob("sub-*"))


def test_an_empty_dataset_is_a_setup_error(tmp_path):
    (tmp_path / "bids").mkdir()
    (tmp_path / "bids" / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    code, out, err = run_cli(
        "run", "anat_preproc", "--bids-dir", tmp_path / "bids", "--output-dir", tmp_path / "o"
    )
    assert (code, out) == (2, "")
    assert err == f"no subjects (sub-* folders) found in BIDS dataset {tmp_path / 'bids'}\n"
    assert not (tmp_path / "o").exists()


def test_output_and_work_folders_inside_the_dataset_are_refused(corpus, tmp_path):
    for option in ("--output-dir", "--work-dir"):
        folder = corpus.source / "sub-good" / "smriflow"
        argv = ["--output-dir", tmp_path / "out", "--work-dir", tmp_path / "work"]
        argv[argv.index(option) + 1] = folder
        code, out, err = run_cli("run", "anat_preproc", "--bids-dir", corpus.source, *argv)
        assert (code, out) == (2, "")
        assert err == (
            f"{option} {folder} is inside the BIDS dataset; use a folder outside it or under "
            f"{corpus.source / 'derivatives'}\n"
        )
    # also through a symbolic link that leads into it
    (tmp_path / "link").symlink_to(corpus.source / "sub-good", target_is_directory=True)
    code, _, err = run_cli(
        "run", "anat_preproc", "--bids-dir", corpus.source, "--output-dir", tmp_path / "link" / "out"
    )
    assert code == 2 and err.startswith(
        f"--output-dir {tmp_path / 'link' / 'out'} is inside the BIDS dataset"
    )
    assert _faults.tree_digest(corpus.source) == corpus.before


# -- interrupted runs, then a resume -------------------------------------------------------------------------
def test_sigterm_sigint_and_sigkill_then_the_same_command_resumes_to_the_same_bytes(corpus, tmp_path):
    """Four runs of one command on the good subject, each stopped differently, the last one left to finish.

    1. SIGTERM (``kill``, ``scancel``) once ``conform`` finished; meanwhile the same subject is refused.
    2. SIGINT to the process group (Ctrl-C in a terminal) once brain extraction finished.
    3. SIGKILL to the process group (out of memory, a lost node) once segmentation finished: no summary, a
       stale lock file naming the dead process.
    4. Left alone: it takes the stale lock, reuses every node finished before (their result files are not
       rewritten), computes the rest and writes the same bytes as the uninterrupted corpus run.
    """
    out, work = tmp_path / "out", tmp_path / "work"
    argv = (
        "run", "anat_preproc", "--bids-dir", corpus.bids, "--output-dir", out, "--work-dir", work,
        "--participant-label", "good",
    )  # fmt: skip
    nodes = work / "smriflow_wf" / "sub_good_wf" / "anat_preproc_wf"

    def finished(*parts: str):
        return lambda: (nodes.joinpath(*parts) / f"result_{parts[-1]}.pklz").is_file()

    lock = out / ".locks" / "sub-good.lock"
    first = _faults.start(*argv, log=tmp_path / "first.txt")
    try:
        _faults.wait_for(finished("conform"), 300, "conform to finish", first)
        code, _, err = run_cli(*argv)
        assert code == 2
        assert re.fullmatch(
            rf"sub-good is being processed by process {first.pid} since \S+ \(lock {re.escape(str(lock))}\); "
            r"wait for that run to end, or leave this subject out with --participant-label\n",
            err,
        ), err
        first.send_signal(signal.SIGTERM)
        assert _faults.exit_code(first, 120, tmp_path / "first.txt") == 143
    finally:
        _faults.kill_group(first)
    text = (tmp_path / "first.txt").read_text()
    assert re.search(
        r"^sub-good: interrupted by SIGTERM after \d+ of \d+ nodes; run the same command again to resume$",
        text,
        flags=re.MULTILINE,
    ), text
    assert "Traceback" not in text, text
    assert not (out / "sub-good").exists() and not lock.exists()

    second = _faults.start(*argv, log=tmp_path / "second.txt")
    try:
        _faults.wait_for(finished("brain_extraction_wf", "brain"), 300, "brain extraction to finish", second)
        _faults.kill_group(second, signal.SIGINT)
        assert _faults.exit_code(second, 120, tmp_path / "second.txt") == 130
    finally:
        _faults.kill_group(second)
    text = (tmp_path / "second.txt").read_text()
    assert re.search(r"^sub-good: interrupted by SIGINT after \d+ of \d+ nodes", text, flags=re.MULTILINE)
    assert "Traceback" not in text, text
    assert not lock.exists()

    third = _faults.start(*argv, log=tmp_path / "third.txt")
    try:
        _faults.wait_for(finished("tissue_segmentation_wf", "segment"), 300, "segmentation to finish", third)
    finally:
        _faults.kill_group(third, signal.SIGKILL)
    assert third.wait(60) == -signal.SIGKILL
    assert read_holder(lock)["pid"] == third.pid  # left behind, naming a dead process
    assert not (out / "sub-good").exists()
    before = {path: path.stat().st_mtime_ns for path in work.rglob("result_*.pklz")}
    assert {path.name for path in before} >= {
        "result_conform.pklz",
        "result_brain.pklz",
        "result_segment.pklz",
    }

    last = _faults.smriflow(*argv)
    assert last.returncode == 0, last.stdout + last.stderr
    assert [path for path, mtime in before.items() if path.stat().st_mtime_ns != mtime] == []  # reused
    computed = set(work.rglob("result_*.pklz")) - set(before)
    assert any(path.name == "result_register.pklz" for path in computed)  # the kill was mid-subject
    assert _faults.tree_digest(out / "sub-good") == _faults.tree_digest(corpus.out / "sub-good")
    assert not lock.exists()
