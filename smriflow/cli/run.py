"""``smriflow run``: a workflow on a BIDS dataset, with live progress and a summary per subject."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run_command"]


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        parents=[common],
        help="run a workflow on a BIDS dataset and write BIDS derivatives",
        description=(
            "Run WORKFLOW on every subject of a BIDS dataset (or those given with --participant-label). "
            "Each subject is its own sub-workflow: a failing subject does not stop the others and "
            "leaves no derivatives. A group workflow (level: group, e.g. qc_group) runs once, on what "
            "its --set arguments and --output-dir point to. Exit code 0 when every subject (or the group "
            "run) succeeded, 1 when any failed, 2 for a usage or configuration error."
        ),
    )
    parser.add_argument(
        "workflow", metavar="WORKFLOW", help="packaged workflow name (smriflow list) or YAML file"
    )
    parser.add_argument(
        "--bids-dir",
        type=Path,
        metavar="DIR",
        help="the BIDS dataset (required by participant workflows; optional for group ones)",
    )
    parser.add_argument(
        "--output-dir", required=True, type=Path, metavar="DIR", help="derivatives folder (created if needed)"
    )
    add_run_options(parser)
    parser.set_defaults(handler=run_command)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``smriflow run`` and the BIDS-App form (``smriflow BIDS OUT participant``)."""
    parser.add_argument(
        "--participant-label",
        nargs="+",
        action="extend",
        metavar="LABEL",
        help="subjects to run, with or without 'sub-' (default: all)",
    )
    parser.add_argument(
        "--longitudinal",
        action="store_true",
        help="one anatomical per subject from every session (inputs declared many: true, e.g. anat_preproc's "
        "T1w, get all sessions' files; derivatives carry no ses-), instead of one run per session",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="intermediate results, reused by a rerun (default: the config's work_dir, else OUTPUT/../work)",
    )
    parser.add_argument(
        "--exec-config",
        metavar="FILE|NAME",
        help="execution config: a packaged name (local, linear, slurm, slurm-node, slurm-array) or a YAML "
        "file (default: local)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="ARG=VALUE",
        help="set a workflow argument; VALUE is read as YAML (repeatable)",
    )
    parser.add_argument("--nprocs", type=int, metavar="N", help="MultiProc: CPUs used at once")
    parser.add_argument("--mem-gb", type=float, metavar="GB", help="MultiProc: memory used at once")
    parser.add_argument("--omp-nthreads", type=int, metavar="N", help="threads per node")
    parser.add_argument(
        "--seed", type=int, metavar="N", help="random seed of every node (same as --set seed=N)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and stop before running; with a SLURMArray config (slurm-array), write the "
        "job script and print the sbatch command",
    )
    parser.add_argument(
        "--session-label",
        nargs="+",
        action="extend",
        metavar="LABEL",
        help="sessions to take, with or without 'ses-' (default: all)",
    )
    parser.add_argument(
        "--bids-filter-file",
        type=Path,
        metavar="FILE",
        help='JSON file of pybids filters per input, as in fMRIPrep: {"t1w": {"acquisition": "mprage"}} '
        "(null: entity absent; lists allowed); keys are the workflow's BIDS inputs (docs/cli.md)",
    )
    parser.add_argument(
        "--output-spaces",
        nargs="+",
        action="extend",
        metavar="SPACE",
        help="standard spaces in NiPreps syntax (e.g. MNI152NLin2009cAsym:res-2 MNI152NLin6Asym): the "
        "first is the template of the run, each further one costs one more registration; templates other "
        "than the default are read from the local TemplateFlow cache (docs/fmriprep.md)",
    )


def run_command(args: argparse.Namespace) -> int:
    """Handle ``smriflow run``; return the exit code."""
    from rich.console import Console

    from smriflow.cli.main import CLIError, parse_set_values
    from smriflow.cli.progress import Progress, print_summary
    from smriflow.config.execution import load_exec_config, override
    from smriflow.engine.prepare import prepare_run
    from smriflow.engine.run import execute_run

    values = parse_set_values(args.set)
    if args.seed is not None:
        if "seed" in values and values["seed"] != args.seed:
            raise CLIError(f"--seed {args.seed} and --set seed={values['seed']} disagree; give one of them")
        values["seed"] = args.seed
    if args.omp_nthreads is not None and values.get("omp_nthreads", args.omp_nthreads) != args.omp_nthreads:
        raise CLIError(
            f"--omp-nthreads {args.omp_nthreads} and --set omp_nthreads={values['omp_nthreads']} disagree; "
            "give one of them"
        )
    if args.output_spaces:
        values.update(output_space_args(args.output_spaces, values))
    config = override(
        load_exec_config(args.exec_config),
        n_procs=args.nprocs,
        memory_gb=args.mem_gb,
        omp_nthreads=args.omp_nthreads,
    )
    prepared = prepare_run(
        args.workflow,
        args.bids_dir,
        args.output_dir,
        participant_labels=args.participant_label,
        work_dir=args.work_dir,
        exec_config=config,
        args=values,
        arg_source="--set",
        longitudinal=args.longitudinal,
        bids_filters=args.bids_filter_file,
        session_labels=args.session_label,
    )
    console = Console(file=sys.stdout, highlight=False, soft_wrap=not sys.stdout.isatty())
    runnable = sum(subject.problem is None for subject in prepared.subjects)
    scope = "the group" if prepared.loaded.spec.level == "group" else f"{len(prepared.subjects)} subject(s)"
    console.print(
        f"smriflow run: {prepared.loaded.spec.name} on {scope} "
        f"[{prepared.config.plugin}], {prepared.total_nodes} nodes; work dir {prepared.work_dir}"
    )
    if runnable < len(prepared.subjects):
        console.print(f"{len(prepared.subjects) - runnable} subject(s) cannot run (see the summary)")
    if args.dry_run:
        from smriflow.cli.progress import print_inputs
        from smriflow.engine.prepare import combined_inputs, taken_inputs
        from smriflow.engine.summary import SubjectResult

        runnable_subjects = [s for s in prepared.subjects if s.problem is None]
        planned = [SubjectResult(s.label, "planned", inputs=taken_inputs(s)) for s in runnable_subjects]
        print_inputs(console, planned, combined_inputs(prepared))
    if args.dry_run or prepared.config.plugin == "SLURMArray":  # one SLURM array task per subject
        from smriflow.engine.slurm_array import run_array

        array_summary = run_array(prepared, args.workflow, values, dry_run=args.dry_run, echo=console.out)
        if array_summary is None:  # dry run, or submitted without waiting
            return 0
        print_summary(console, array_summary, debug=args.debug)
        return array_summary.exit_code
    with Progress(console, prepared.nodes) as progress:
        summary = execute_run(prepared, status_callback=progress.update, debug=args.debug)
    print_summary(console, summary, debug=args.debug)
    return summary.exit_code


def output_space_args(items: list[str], values: dict[str, Any]) -> dict[str, Any]:
    """``--output-spaces`` → workflow arguments, checked offline: the first space is the registration
    ``template`` (of brain extraction, VBM, atlases and QC); each further one is registered on its own
    (``spaces``, with the ``res-`` of its file names in ``spaces_res``; docs/fmriprep.md).

    Raises
    ------
    CLIError
        A malformed or repeated item, a template missing from the local TemplateFlow cache (naming the
        command that fetches it; every space is checked), a ``res-`` the profile does not write, or a
        disagreeing ``--set template``/``spaces``.
    """
    from smriflow.bids.spaces import OutputSpaceError, parse_output_spaces
    from smriflow.cli.main import CLIError
    from smriflow.data.templates import (
        REGISTRATION_FILES,
        REQUIRED_FILES,
        TemplateNotFoundError,
        check_template,
    )

    try:
        spaces = parse_output_spaces(items)
    except OutputSpaceError as exc:
        raise CLIError(str(exc)) from None
    profile = values.get("profile", "fast")
    written = 1 if profile == "precise" else 2
    for index, space in enumerate(spaces):
        if space.cohort:
            raise CLIError(f"--output-spaces {space.spec}: template cohorts are not supported by smriflow")
        if space.resolution not in (None, written):
            raise CLIError(
                f"--output-spaces {space.spec}: with profile {profile} the template-space outputs are on "
                f"the template's res-{written} grid; give :res-{written} (precise: res-1, fast: res-2)"
            )
        try:
            # the run's template serves brain extraction, VBM and QC; a further one is only registered to
            check_template(space.template, REQUIRED_FILES if index == 0 else REGISTRATION_FILES)
        except TemplateNotFoundError as exc:
            raise CLIError(f"--output-spaces {space.spec}: {exc}") from None
    first, *others = spaces
    found = {
        "template": first.template,
        "spaces": [space.template for space in others],
        "spaces_res": [space.resolution for space in others],
    }
    for key, value in found.items():
        if key in values and values[key] != value:
            raise CLIError(
                f"--output-spaces {' '.join(s.spec for s in spaces)} and --set {key}={values[key]} "
                "disagree; give one of them"
            )
    return found if others else {"template": first.template}
