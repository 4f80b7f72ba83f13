"""The BIDS-Apps form of the command: ``smriflow BIDS_DIR OUTPUT_DIR participant|group [options]``.

BIDS-Apps platforms call an app with three positional arguments. smriflow maps them onto its own commands:

* ``participant`` → ``smriflow run anat_preproc --bids-dir BIDS_DIR --output-dir OUTPUT_DIR``;
* ``group`` → ``smriflow run qc_group --bids-dir BIDS_DIR --output-dir OUTPUT_DIR`` (the group QC of the
  derivatives the participant level wrote there).

Telling the two forms apart: the call is the BIDS-Apps form when its first argument (after an optional
``--debug``) is not a command name (``run``, ``validate``, ...) and is an existing directory, or when its
third is ``participant`` or ``group`` (then a missing dataset is reported as such). A dataset folder named
like a command is given as ``./run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LEVELS", "get_bidsapp_parser", "is_bidsapp_call"]

#: Analysis level → the packaged workflow it runs.
LEVELS = {"participant": "anat_preproc", "group": "qc_group"}


def is_bidsapp_call(argv: Sequence[str], commands: Sequence[str]) -> bool:
    """Whether ``argv`` is the BIDS-Apps form: its first positional is an existing folder, not a command.

    Examples
    --------
    >>> is_bidsapp_call(["run", "anat_preproc"], ["run"])
    False
    >>> is_bidsapp_call([".", "out", "participant"], ["run"])
    True
    """
    positionals = [item for item in argv if item != "--debug"][:3]
    if not positionals or positionals[0].startswith("-") or positionals[0] in commands:
        return False
    # a missing dataset in the full form is reported as such (not as an unknown command)
    return Path(positionals[0]).is_dir() or (len(positionals) == 3 and positionals[2] in LEVELS)


def get_bidsapp_parser() -> argparse.ArgumentParser:
    """The parser of the BIDS-Apps form (its options are those of ``smriflow run``)."""
    from smriflow.cli.run import add_run_options

    parser = argparse.ArgumentParser(
        prog="smriflow",
        usage="smriflow BIDS_DIR OUTPUT_DIR {participant,group} [options]",
        description=(
            "BIDS-Apps form: 'participant' runs anat_preproc on each subject (smriflow run anat_preproc), "
            "'group' runs the group QC (smriflow run qc_group) on the derivatives in OUTPUT_DIR. The "
            "other commands: smriflow --help."
        ),
    )
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR", help="the BIDS dataset")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR", help="derivatives folder")
    parser.add_argument("analysis_level", choices=sorted(LEVELS), help="participant or group")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show Python tracebacks, nipype's log and crash reports on the terminal",
    )
    add_run_options(parser)
    parser.set_defaults(handler=bidsapp_command)
    return parser


def bidsapp_command(args: argparse.Namespace) -> int:
    """Run the workflow of the analysis level with ``smriflow run``'s handler."""
    from smriflow.cli.main import CLIError
    from smriflow.cli.run import run_command

    if args.analysis_level == "group" and args.output_spaces:
        raise CLIError("--output-spaces does not apply to the group level (give it to the participant level)")
    args.workflow = LEVELS[args.analysis_level]
    return run_command(args)
