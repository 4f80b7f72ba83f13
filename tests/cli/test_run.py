"""``smriflow run`` end to end on tiny synthetic BIDS datasets (and once on the shared real data)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from _helpers import run_cli
from conftest import write_synthetic_t1w

import smriflow
from smriflow import __version__
from smriflow.engine.derivatives import check_entities
from smriflow.engine.prepare import prepare_run
from smriflow.engine.registry import packaged_workflows

# The module-scoped runs are shared by many tests: keep them on one xdist worker (CI: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("smriflow_run")

EXAMPLE_FILES = [
    "anat/sub-{s}_desc-head_mask.json",
    "anat/sub-{s}_desc-head_mask.nii.gz",
    "anat/sub-{s}_desc-masked_T1w.json",
    "anat/sub-{s}_desc-masked_T1w.nii.gz",
    "anat/sub-{s}_desc-masked_stats.json",
    "anat/sub-{s}_desc-smooth_T1w.json",
    "anat/sub-{s}_desc-smooth_T1w.nii.gz",
]
DEFAULT_ARGS = {"fwhm": 4.0, "percentile": 50.0, "seed": 20161}


def make_bids(root: Path, labels=("01", "02"), *, corrupt=(), zeros=(), sessions=(), t2w_only=()) -> Path:
    """A tiny BIDS dataset: 24³ synthetic T1w images, and the broken cases asked for."""
    for index, label in enumerate(labels):
        anat = root / f"sub-{label}" / "anat"
        if label in sessions:
            for session in ("A", "B"):
                path = (
                    root
                    / f"sub-{label}"
                    / f"ses-{session}"
                    / "anat"
                    / f"sub-{label}_ses-{session}_T1w.nii.gz"
                )
                write_synthetic_t1w(path, seed=index)
        elif label in t2w_only:
            write_synthetic_t1w(anat / f"sub-{label}_T2w.nii.gz", seed=index)
        elif label in corrupt:
            anat.mkdir(parents=True)
            (anat / f"sub-{label}_T1w.nii.gz").write_text("this is not an image")
        elif label in zeros:
            anat.mkdir(parents=True)
            nb.Nifti1Image(np.zeros((12, 12, 12), np.float32), np.eye(4)).to_filename(
                anat / f"sub-{label}_T1w.nii.gz"
            )
        else:
            write_synthetic_t1w(anat / f"sub-{label}_T1w.nii.gz", seed=index)
    (root / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.8.0"}')
    return root


def derivative_files(output: Path) -> list[str]:
    return sorted(
        str(p.relative_to(output)) for p in output.rglob("*") if p.is_file() and "logs" not in p.parts
    )


def row(text: str, *cells: str) -> bool:
    """Whether a summary table row with these cells (separated by spaces) is in ``text``."""
    pattern = r"^\s*" + r"\s+".join(re.escape(cell) for cell in cells) + r"\s*$"
    return re.search(pattern, text, flags=re.MULTILINE) is not None


# -- one run with every kind of subject -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """01, 02 fine; 03 not an image; 04 all zeros (fails late); 05 two sessions; 06 has no T1w."""
    root = tmp_path_factory.mktemp("mixed")
    bids = make_bids(
        root / "bids", ("01", "02", "03", "04", "05", "06"), corrupt=("03",), zeros=("04",),
        sessions=("05",), t2w_only=("06",),
    )  # fmt: skip
    output = root / "derivatives" / "smriflow"
    code, out, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", output, "--nprocs", "2")
    return {"root": root, "bids": bids, "output": output, "code": code, "out": out, "err": err}


def test_mixed_run_exit_code_and_summary(mixed_run):
    out = mixed_run["out"]
    assert mixed_run["code"] == 1
    assert mixed_run["err"] == ""
    assert "Traceback" not in out
    assert out.startswith("smriflow run: example_wf on 6 subject(s) [MultiProc], 53 nodes; work dir ")
    assert "1 subject(s) cannot run (see the summary)" in out
    assert out.count("progress: 36/53 nodes done, 2 failed\n") == 1  # the last progress line
    assert "example_wf: 3 of 6 subject(s) done" in out
    assert row(out, "Subject", "Status", "Nodes", "Failed node / reason")
    assert row(out, "sub-01", "done", "9/9")
    assert row(out, "sub-02", "done", "9/9")
    assert row(out, "sub-03", "failed", "0/9", "sub_03_wf.example_wf.smooth")
    assert row(out, "sub-04", "failed", "1/9", "sub_04_wf.example_wf.masking_wf.threshold")
    assert row(out, "sub-05", "done", "17/17")
    assert re.search(
        r"^\s*sub-06\s+failed\s+-\s+no file matches required input 't1w'", out, flags=re.MULTILINE
    )
    missing = "no file matches required input 't1w' (datatype=anat, suffix=T1w, extension=[.nii, .nii.gz])"
    assert f"sub-06: {missing}\n" in out
    smooth, threshold = "sub_03_wf.example_wf.smooth", "sub_04_wf.example_wf.masking_wf.threshold"
    assert re.search(
        rf"^sub-03: node {re.escape(smooth)} failed: ValueError: .*sub-03_T1w\.nii\.gz: not a readable NIfTI",
        out,
        flags=re.MULTILINE,
    )
    assert re.search(
        rf"^sub-04: node {re.escape(threshold)} failed: ValueError: .*all zeros, so no mask can be made$",
        out,
        flags=re.MULTILINE,
    )
    crash_files = re.findall(r"^  crash file: (\S+)$", out, flags=re.MULTILINE)
    assert len(crash_files) == 2
    for path, node in zip(crash_files, (smooth, threshold), strict=True):
        assert Path(path).is_file()
        assert Path(path).parent == mixed_run["root"] / "derivatives" / "work" / "crash"
        assert Path(path).read_text().startswith(f"Node: smriflow_wf.{node}\n")
    assert f"Derivatives: {mixed_run['output']}\n" in out
    log = re.search(r"^Log: (\S+)$", out, flags=re.MULTILINE).group(1)
    assert Path(log).parent == mixed_run["output"] / "logs"
    assert "[Node] Finished" in Path(log).read_text()  # nipype's log went to the file, not the terminal
    assert "[Node]" not in out


def test_mixed_run_writes_exactly_the_derivatives_of_finished_subjects(mixed_run):
    output = mixed_run["output"]
    expected = ["dataset_description.json"]
    expected += [f"sub-{s}/" + name.format(s=s) for s in ("01", "02") for name in EXAMPLE_FILES]
    expected += [
        f"sub-05/ses-{ses}/" + name.format(s=f"05_ses-{ses}") for ses in ("A", "B") for name in EXAMPLE_FILES
    ]
    assert derivative_files(output) == sorted(expected)
    # sub-04 failed late: its smoothed image exists in the work dir, yet nothing of it was published
    work = mixed_run["root"] / "derivatives" / "work" / "smriflow_wf"
    assert list((work / "sub_04_wf" / "example_wf" / "smooth").glob("*_smooth.nii.gz"))
    assert not (work / "sub_04_wf" / "derivatives_barrier").exists()
    assert not list(output.rglob(".*.*"))  # no temporary file (".<name>.<random>") left behind


def test_mixed_run_sidecars_and_dataset_description(mixed_run):
    output, bids = mixed_run["output"], mixed_run["bids"]
    sidecar = json.loads((output / "sub-01/anat/sub-01_desc-head_mask.json").read_text())
    assert sidecar == {
        "Description": "head mask",
        "Sources": ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"],
        "GeneratedBy": [
            {
                "Name": "smriflow",
                "Version": __version__,
                "Workflow": "example_wf",
                "Output": "t1w_mask",
                "Node": "example_wf.masking_wf.threshold.out_mask",
                "Args": DEFAULT_ARGS,
                "Threads": 1,
            }
        ],
    }
    smooth = json.loads((output / "sub-05/ses-B/anat/sub-05_ses-B_desc-smooth_T1w.json").read_text())
    assert smooth["Sources"] == ["bids:raw:sub-05/ses-B/anat/sub-05_ses-B_T1w.nii.gz"]
    assert smooth["GeneratedBy"][0]["Node"] == "example_ses_B_wf.smooth.out_file"
    stats = json.loads((output / "sub-01/anat/sub-01_desc-masked_stats.json").read_text())
    assert set(stats) == {"voxels", "volume_mm3", "mean", "std", "median"}  # the data, not a sidecar

    description = json.loads((output / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["SourceDatasets"] == [{"URL": bids.as_uri()}]
    generated = description["GeneratedBy"]
    assert [g["Name"] for g in generated] == ["smriflow"] and generated[0]["Version"] == __version__
    assert generated[0]["Workflow"] == {
        "Name": "example_wf",
        "Spec": str(packaged_workflows()["example"].resolve()),
        "Args": {**DEFAULT_ARGS, "omp_nthreads": 1},
        "Longitudinal": False,
    }
    config = generated[0]["ExecutionConfig"]
    assert config["plugin"] == "MultiProc" and config["plugin_args"]["n_procs"] == 2
    assert config["Source"].endswith("configs/local.yml")
    assert config["nipype"]["stop_on_first_crash"] is False


def test_mixed_run_images_are_the_workflow_outputs(mixed_run):
    output = mixed_run["output"]
    mask = nb.load(output / "sub-01/anat/sub-01_desc-head_mask.nii.gz")
    masked = nb.load(output / "sub-01/anat/sub-01_desc-masked_T1w.nii.gz").get_fdata()
    t1w = nb.load(mixed_run["bids"] / "sub-01/anat/sub-01_T1w.nii.gz")
    assert mask.shape == t1w.shape and np.allclose(mask.affine, t1w.affine)
    inside = mask.get_fdata() > 0
    assert 0 < inside.sum() < inside.size
    assert np.all(masked[~inside] == 0)


# -- determinism and reuse --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_runs(tmp_path_factory):
    """The same two subjects under the default (MultiProc) and the linear config."""
    root = tmp_path_factory.mktemp("good")
    bids = make_bids(root / "bids", ("01", "02"))
    runs = {}
    for name in ("local", "linear"):
        output, work = root / name / "out", root / name / "work"
        code, out, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", output,
                                 "--work-dir", work, "--exec-config", name)  # fmt: skip
        runs[name] = {"output": output, "work": work, "code": code, "out": out, "err": err}
    runs["bids"] = bids
    return runs


def test_linear_and_multiproc_give_identical_derivatives(good_runs):
    local, linear = good_runs["local"], good_runs["linear"]
    assert (local["code"], linear["code"]) == (0, 0)
    assert "[Linear]" in linear["out"] and "[MultiProc]" in local["out"]
    files = derivative_files(local["output"])
    assert files == derivative_files(linear["output"])
    assert len(files) == 1 + 2 * len(EXAMPLE_FILES)
    for name in files:
        if name.startswith("sub-"):  # byte for byte, compressed images included
            assert (local["output"] / name).read_bytes() == (linear["output"] / name).read_bytes(), name


def test_rerun_reuses_the_work_dir_and_leaves_derivatives_alone(good_runs):
    local = good_runs["local"]
    work = local["work"] / "smriflow_wf" / "sub_01_wf" / "example_wf"
    results = sorted(work.rglob("result_*.pklz"))
    assert len(results) == 4  # smooth, threshold, apply, stats
    before = {p: p.stat().st_mtime_ns for p in results}
    derivatives = {p: p.stat().st_mtime_ns for p in local["output"].rglob("sub-*/anat/*")}
    code, out, err = run_cli(
        "run", "example", "--bids-dir", good_runs["bids"], "--output-dir", local["output"],
        "--work-dir", local["work"],
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert {p: p.stat().st_mtime_ns for p in results} == before  # nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in derivatives} == derivatives  # identical files not rewritten
    log = Path(re.search(r"^Log: (\S+)$", out, flags=re.MULTILINE).group(1)).read_text()
    assert "Cached (smriflow_wf.sub_01_wf.example_wf.smooth)" in log
    assert "[Node] Executing" not in log.split("derivatives_barrier")[0]


def test_other_arguments_cannot_share_an_output_dir(good_runs):
    local = good_runs["local"]
    code, out, err = run_cli(
        "run", "example", "--bids-dir", good_runs["bids"], "--output-dir", local["output"], "--set", "fwhm=6"
    )
    assert (code, out) == (2, "")
    assert err == (
        f"{local['output']} holds derivatives of 'example_wf' made with other arguments: fwhm=4.0 (now 6.0); "
        "choose another --output-dir, or remove that one\n"
    )


def test_longitudinal_cannot_share_an_output_dir_with_per_session_runs(good_runs):
    local = good_runs["local"]
    code, out, err = run_cli(
        "run", "example", "--bids-dir", good_runs["bids"], "--output-dir", local["output"], "--longitudinal"
    )
    assert (code, out) == (2, "")
    assert err == (
        f"{local['output']} holds derivatives of 'example_wf' made without --longitudinal; run with it into "
        "another --output-dir\n"
    )


def test_longitudinal_needs_an_input_that_takes_many_files(tmp_path):
    bids = make_bids(tmp_path / "bids", labels=("01",), sessions=("01",))
    code, out, _ = run_cli(
        "run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out", "--longitudinal"
    )
    assert code == 1
    assert "2 files match input 't1w' (sub-01_ses-A_T1w.nii.gz, sub-01_ses-B_T1w.nii.gz)" in " ".join(
        out.split()
    )


def test_console_script_in_a_subprocess(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01",))
    script = shutil.which(
        "smriflow", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    assert script is not None
    result = subprocess.run(
        [script, "run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out", "--seed", "7"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert "progress: 9/9 nodes done, 0 failed\n" in result.stdout  # plain lines: stdout is not a terminal
    assert row(result.stdout, "sub-01", "done", "9/9")
    assert derivative_files(tmp_path / "out") == sorted(
        ["dataset_description.json"] + ["sub-01/" + name.format(s="01") for name in EXAMPLE_FILES]
    )
    sidecar = json.loads((tmp_path / "out/sub-01/anat/sub-01_desc-smooth_T1w.json").read_text())
    assert sidecar["GeneratedBy"][0]["Args"]["seed"] == 7


def test_debug_shows_the_node_traceback(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01",), corrupt=("01",))
    code, out, _ = run_cli("run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out", "--debug")
    assert code == 1
    assert "Traceback" in out and "not a readable NIfTI/MGH image" in out
    assert derivative_files(tmp_path / "out") == ["dataset_description.json"]


# -- errors before running --------------------------------------------------------------------------------
def test_bad_set_value_is_one_line_and_exit_2(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01",))
    code, out, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out",
                             "--set", "fwhm=abc")  # fmt: skip
    assert (code, out) == (2, "")
    assert err == "--set fwhm: 'fwhm' must be of type float. 'abc' was provided.\n"
    assert not (tmp_path / "out").exists()


def _atlases() -> str:
    from smriflow.data.atlases import available_atlases

    return "{" + ", ".join(repr(name) for name in available_atlases()) + "}"


@pytest.mark.parametrize(
    ("workflow", "values", "message"),
    [
        pytest.param(
            "example", ["fwhm=99"],
            "--set fwhm: 'fwhm' of node smooth (SmoothImage) must be 0.0 <= a floating point number <= 50.0. "
            "99.0 was provided.",
            id="out-of-range",
        ),
        pytest.param(
            "example", ["percentile=100"],
            "--set percentile: 'percentile' of node masking.threshold (ThresholdMask) must be 0.0 <= a "
            "floating point number <= 99.999. 100.0 was provided.",
            id="out-of-range-nested",
        ),
        pytest.param(
            "example", ["percentile=[50]"],
            "--set percentile: 'percentile' must be of type float. [50] was provided.",
            id="wrong-type",
        ),
        pytest.param(
            "anat_preproc", ["profile=slow"],
            "--set profile: 'profile' must be one of {'fast', 'precise'}. 'slow' was provided.",
            id="bad-choice",
        ),
        pytest.param(
            "anat_preproc", ["atlases=[aal, nosuch]"],
            "--set atlases: 'atlas' of node parcellation.warp_atlas (WarpAtlas) must be an installed atlas: "
            "one of {atlases} or its BIDS label. 'nosuch' was provided.",
            id="unknown-atlas",
        ),
        pytest.param(
            "anat_preproc", ["template=MNIColin27"],
            "--set template: 'template' of node brain_extraction.brain (BrainExtraction) must be an "
            "installed template: one of {'MNI152NLin2009aSym', 'MNI152NLin6Asym'} (from nilearn, or "
            "downloaded into the TemplateFlow cache {tf}, which TEMPLATEFLOW_HOME may move). 'MNIColin27' "
            "was provided.",
            id="unknown-template",
        ),
    ],
)  # fmt: skip
def test_bad_values_stop_a_dry_run(tmp_path, templateflow_home, workflow, values, message):
    """Every kind of bad value is one line and exit code 2 before anything is written, even with --dry-run."""
    bids = make_bids(tmp_path / "bids", ("01",))
    sets = [arg for value in values for arg in ("--set", value)]
    code, out, err = run_cli("run", workflow, "--bids-dir", bids, "--output-dir", tmp_path / "out",
                             "--work-dir", tmp_path / "work", "--dry-run", *sets)  # fmt: skip
    assert (code, out) == (2, "")
    assert err == message.replace("{atlases}", _atlases()).replace("{tf}", str(templateflow_home)) + "\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_an_installed_templateflow_template_is_accepted(templateflow_home):
    wf = smriflow.load_workflow("anat_preproc", template="MNI152NLin6Asym")
    assert wf.get_node("spatial_normalization_wf.register").inputs.template == "MNI152NLin6Asym"


def test_group_workflow_values_are_checked_before_running(tmp_path):
    """roi_glm: a bad choice for the interface, and a table that does not exist."""
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\nsub-01\t30\n")
    common = ["run", "roi_glm", "--output-dir", tmp_path / "out", "--dry-run", "--set",
              f"participants={participants}"]  # fmt: skip
    code, out, err = run_cli(*common, "--set", f"table={participants}", "--set", "missing=dorp")
    assert (code, out, err) == (
        2,
        "",
        "--set missing: 'missing' must be one of {'drop', 'impute'}. 'dorp' was provided.\n",
    )
    code, out, err = run_cli(*common, "--set", f"table={tmp_path / 'lh.tsv'}")
    assert (code, out) == (2, "")
    assert err == (
        "--set table: 'table' of node fit (ROIGLM) must be a pathlike object or string representing an "
        f"existing file. '{tmp_path / 'lh.tsv'}' was provided.\n"
    )


def test_unknown_participant_label(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01", "02"))
    code, out, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out",
                             "--participant-label", "sub-01", "07")  # fmt: skip
    assert (code, out) == (2, "")
    assert err == f"participant label '07' not found in BIDS dataset {bids}. Available: 01, 02\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "fwhm"], "--set expects NAME=VALUE (e.g. --set fwhm=6); got 'fwhm'\n"),
        (["--set", "fwhm=[1,"], "--set fwhm: '[1,' is not a valid YAML value ("),
        (["--set", "fwmh=2"],
         "args.fwmh: unknown --set 'fwmh' for workflow 'example_wf'. Did you mean 'fwhm'?"),
        (["--seed", "3", "--set", "seed=4"], "--seed 3 and --set seed=4 disagree; give one of them\n"),
        (["--exec-config", "slurm", "--nprocs", "2"],
         "command line: --nprocs: applies to the MultiProc plugin only; this config uses SLURMGraph.\n"),
        (["--exec-config", "nonesuch"], "nonesuch: no execution config named 'nonesuch'"),
    ],
)  # fmt: skip
def test_usage_errors(tmp_path, extra, message):
    bids = make_bids(tmp_path / "bids", ("01",))
    code, out, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out", *extra)
    assert (code, out) == (2, "")
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_bids_dir(tmp_path):
    code, _, err = run_cli(
        "run", "example", "--bids-dir", tmp_path / "nope", "--output-dir", tmp_path / "out"
    )
    assert (code, err) == (2, f"BIDS dataset folder not found: {tmp_path / 'nope'}\n")


def test_prepare_builds_one_gated_subgraph_per_subject(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01", "02"))
    prepared = prepare_run("example", bids, tmp_path / "out", args={"fwhm": 2})
    assert prepared.args["fwhm"] == 2.0
    sub = prepared.workflow.get_node("sub_01_wf")
    assert sorted(sub.list_node_names()) == sorted(
        ["derivatives_barrier", "ds_t1w_mask", "ds_t1w_masked", "ds_t1w_smooth", "ds_t1w_stats"]
        + ["example_wf." + n for n in ("inputnode", "masking_wf.apply", "masking_wf.inputnode",
                                       "masking_wf.outputnode", "masking_wf.threshold", "outputnode",
                                       "smooth", "stats")]
    )  # fmt: skip
    barrier = sub.get_node("derivatives_barrier")
    feeding = [d["connect"] for _, _, d in sub._graph.in_edges(barrier, data=True)]
    assert sorted(port for edges in feeding for _, port in edges) == ["t1w_mask", "t1w_masked", "t1w_smooth",
                                                                      "t1w_stats"]  # fmt: skip
    assert prepared.total_nodes == 18
    assert not (tmp_path / "out").exists()  # preparing writes nothing


# -- output entity rules -----------------------------------------------------------------------------------
def test_check_entities_accepts_usual_and_list_values():
    assert check_entities({"desc": "head", "suffix": "mask"}) == []
    assert check_entities({"desc": "masked", "suffix": "stats", "extension": ".json"}) == []
    assert check_entities({"atlas": ["aal", "dkt"], "suffix": "dseg", "space": "MNI152NLin2009aSym"}) == []
    assert check_entities({"desc": "$flavour", "suffix": "T1w"}) == []  # undeclared $arg: reported elsewhere


@pytest.mark.parametrize(
    ("entities", "expected"),
    [
        ({"desc": "head"}, [("", "a derivative needs a 'suffix' (e.g. suffix: mask)", "")]),
        (
            {"desk": "head", "suffix": "mask"},
            [("desk", "'desk' is not a BIDS entity", "Did you mean 'desc'?")],
        ),
        (
            {"desc": "head-mask", "suffix": "mask"},
            [
                (
                    "desc",
                    "must be letters and digits only (a BIDS label), or a list of them; got 'head-mask'",
                    "Hyphens and underscores separate entities.",
                )
            ],
        ),
        (
            {"subject": "01", "suffix": "T1w"},
            [("subject", "'subject' cannot be set: it comes from the input file", "")],
        ),
        (
            {"suffix": "T1w", "extension": "nii.gz"},
            [("extension", "must be a file extension such as '.nii.gz' or '.json'; got 'nii.gz'", "")],
        ),
    ],
)
def test_check_entities_reports_mistakes(entities, expected):
    problems = check_entities(entities)
    assert [(key, message) for key, message, _ in problems] == [
        (key, message) for key, message, _ in expected
    ]
    for (_, _, hint), (_, _, wanted) in zip(problems, expected, strict=True):
        assert hint.startswith(wanted)


def test_query_with_unknown_entity_is_located_in_the_workflow_file(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01",))
    spec = tmp_path / "query.yml"
    text = packaged_workflows()["example"].read_text().replace("name: example_wf", "name: query_wf")
    spec.write_text(text.replace("bids: {datatype: anat, suffix: T1w", "bids: {datatype: anat, sufix: T1w"))
    code, _, err = run_cli("run", spec, "--bids-dir", bids, "--output-dir", tmp_path / "out")
    line, where = next((n, t) for n, t in enumerate(text.splitlines(), 1) if "suffix: T1w, extension" in t)
    column = where.index("suffix") + 1
    assert code == 2
    assert err.startswith(
        f"{spec}:{line}:{column}: inputs.t1w.bids.sufix: 'sufix' is not a BIDS entity. Did you"
    )


def test_output_dir_inside_the_dataset_is_refused(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01",))
    code, _, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", bids / "out")
    assert code == 2
    assert err == (
        f"--output-dir {bids / 'out'} is inside the BIDS dataset; use a folder outside it or under "
        f"{bids / 'derivatives'}\n"
    )


def test_thread_and_seed_options_reach_the_config_and_the_workflow(tmp_path):
    from smriflow.config.execution import load_exec_config, override

    bids = make_bids(tmp_path / "bids", ("01",))
    config = override(load_exec_config("local"), n_procs=2, omp_nthreads=2)
    prepared = prepare_run("example", bids, tmp_path / "out", exec_config=config, args={"seed": 3})
    assert (prepared.args["omp_nthreads"], prepared.args["seed"], prepared.config.omp_nthreads) == (2, 3, 2)
    prepared = prepare_run("example", bids, tmp_path / "out", exec_config=override(config, omp_nthreads=1),
                           args={"omp_nthreads": 2})  # fmt: skip
    assert prepared.config.omp_nthreads == 2  # one setting for the nodes and the plugin's thread policy


# -- real data --------------------------------------------------------------------------------------------
@pytest.mark.shared
def test_example_on_the_shared_bids_dataset(shared_data, tmp_path):
    bids = shared_data / "bids"
    code, out, err = run_cli("run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out")
    assert (code, err) == (0, ""), out
    assert row(out, "sub-0002", "done", "9/9")
    assert derivative_files(tmp_path / "out") == sorted(
        ["dataset_description.json"] + ["sub-0002/" + name.format(s="0002") for name in EXAMPLE_FILES]
    )
    mask = nb.load(tmp_path / "out/sub-0002/anat/sub-0002_desc-head_mask.nii.gz")
    t1w = nb.load(bids / "sub-0002/anat/sub-0002_T1w.nii.gz")
    assert mask.shape == t1w.shape
    fraction = (np.asanyarray(mask.dataobj) > 0).mean()
    assert 0.02 < fraction < 0.6  # a head, not nothing and not the whole field of view
    stats = json.loads((tmp_path / "out/sub-0002/anat/sub-0002_desc-masked_stats.json").read_text())
    assert stats["voxels"] > 0 and stats["mean"] > 0


def test_linear_config_stops_at_the_first_failure(tmp_path):
    bids = make_bids(tmp_path / "bids", ("01", "02"), corrupt=("01",))
    code, out, err = run_cli(
        "run", "example", "--bids-dir", bids, "--output-dir", tmp_path / "out", "--exec-config", "linear"
    )
    assert (code, err) == (1, "")
    assert row(out, "sub-01", "failed", "0/9", "sub_01_wf.example_wf.smooth")
    assert "sub-02: 9 node(s) did not run (the config sets stop_on_first_crash)\n" in out
    assert derivative_files(tmp_path / "out") == ["dataset_description.json"]


def test_meta_output_joins_the_sidecar(tmp_path):
    """An output's ``meta:`` (a dict made by the workflow) is merged into its JSON sidecar."""
    workflow = tmp_path / "conformed.yml"
    workflow.write_text(
        "smriflow: 1\nname: conformed_wf\ndoc: d\n"
        "inputs:\n  t1w: {bids: {datatype: anat, suffix: T1w, extension: [.nii, .nii.gz]}}\n"
        "outputs:\n"
        "  t1w_conformed: {from: conform.out_file, bids: {desc: conformed, suffix: T1w}, meta: info}\n"
        "  info: {from: conform.report}\n"
        "nodes:\n  conform:\n    interface: ConformImage\n    in: {in_file: inputs.t1w}\n"
    )
    bids = make_bids(tmp_path / "bids", labels=("01",))
    code, _, err = run_cli("run", workflow, "--bids-dir", bids, "--output-dir", tmp_path / "out")
    assert code == 0, err
    sidecar = json.loads((tmp_path / "out/sub-01/anat/sub-01_desc-conformed_T1w.json").read_text())
    assert sidecar["GeneratedBy"][0]["Output"] == "t1w_conformed"  # provenance is kept
    assert "reoriented_from" in sidecar  # and the conform record joins it
    assert derivative_files(tmp_path / "out") == [
        "dataset_description.json",
        "sub-01/anat/sub-01_desc-conformed_T1w.json",
        "sub-01/anat/sub-01_desc-conformed_T1w.nii.gz",
    ]
