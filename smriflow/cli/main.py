"""Entry point of the ``smriflow`` command: the argument parser and how errors reach the terminal.

Exit codes: 0 success; 1 a subject or a node failed (``run``) or a file is invalid (``validate``);
2 a usage or configuration error (bad options, :class:`~smriflow.config.errors.SpecError`, a missing
dataset); 130 interrupted. Mistakes are printed as one line each, without a Python traceback; ``--debug``
adds the traceback (and, for ``run``, nipype's log and the crash reports).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from smriflow._version import __version__

__all__ = ["CLIError", "get_parser", "main", "parse_set_values"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """A usage mistake found after argument parsing; the message is printed as it is (exit code 2)."""


def get_parser() -> argparse.ArgumentParser:
    """The parser of ``smriflow`` and its commands (``sphinxarg`` documents it from here)."""
    from smriflow.cli import commands, demo, graph, run, stats

    parser = argparse.ArgumentParser(
        prog="smriflow",
        description="YAML-declared nipype workflows for structural MRI, from BIDS to derivatives.",
        epilog="Run `smriflow COMMAND --help` for the options of a command. BIDS-Apps form: "
        "`smriflow BIDS_DIR OUTPUT_DIR participant|group [options]` "
        "(smriflow BIDS_DIR OUTPUT_DIR participant --help). Docs: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"smriflow {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        help="show Python tracebacks, nipype's log and crash reports on the terminal",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    run.add_parser(subparsers, common)
    commands.add_validate_parser(subparsers, common)
    graph.add_graph_parser(subparsers, common)
    commands.add_list_parser(subparsers, common)
    demo.add_demo_parser(subparsers, common)
    stats.add_stats_parser(subparsers, common)
    return parser


def parse_set_values(items: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``--set NAME=VALUE`` options; each value is read as YAML 1.2 (``4`` int, ``[1, 2]`` list).

    Raises
    ------
    CLIError
        When an item has no ``=`` or its value is not valid YAML.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)  # the pure loader reads YAML 1.2: `yes` stays a string
    values: dict[str, Any] = {}
    for item in items or ():
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise CLIError(f"--set expects NAME=VALUE (e.g. --set fwhm=6); got {item!r}")
        try:
            values[name] = yaml.load(text)
        except YAMLError as exc:
            problem = str(getattr(exc, "problem", "") or exc).splitlines()[0]
            raise CLIError(f"--set {name}: {text!r} is not a valid YAML value ({problem})") from exc
    return values


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of a command line: the commands', or the BIDS-Apps form's (``BIDS_DIR OUT LEVEL``)."""
    from smriflow.cli.bidsapp import get_bidsapp_parser, is_bidsapp_call

    parser = get_parser()
    commands = next(
        action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return get_bidsapp_parser() if is_bidsapp_call(list(argv), list(commands)) else parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smriflow`` command line; return the exit code (the console script exits with it)."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # nipype must never look for updates online
    _stacks_on_sigusr1()
    warnings.filterwarnings("ignore", message="TemplateFlow: repository not found")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parser_for(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = getattr(args, "debug", False)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("smriflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report_error(exc, debug)


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's Python stack to stderr (a run that seems to hang).

    Left out where stderr is not a real file (an embedding program or a test capturing it).
    """
    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (AttributeError, OSError, RuntimeError, ValueError):  # io.UnsupportedOperation is an OSError
        pass


def _report_error(exc: Exception, debug: bool) -> int:
    from smriflow.config.errors import SpecError
    from smriflow.engine.derivatives import RunSetupError

    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, SpecError | RunSetupError | CLIError):
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    hint = "" if debug else " Run again with --debug for the traceback."
    text = str(exc).rstrip()
    if not text.endswith((".", "?", "!")):  # one full stop, whether the exception ends with one or not
        text += "."
    print(f"smriflow: internal error: {type(exc).__name__}: {text}{hint}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    # `python -m smriflow.cli.main`: run the imported module's main, whose CLIError is the one the commands
    # raise (this __main__ copy defines a second CLIError class, and its errors would look internal)
    from smriflow.cli.main import main as _main

    sys.exit(_main())
