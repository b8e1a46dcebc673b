"""The ``hotpatch`` command line: ``hotpatch profile | patch | eval | train | finetune | sweep | tune | show | lift | export | recipes``.

Each subcommand lives in ``hotpatch/cli/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int``. Errors end the program with one line and exit code 2 (a
traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from hotpatch._version import __version__
from hotpatch.errors import HotpatchError

COMMANDS = ("profile", "patch", "eval", "train", "finetune", "sweep", "tune", "show", "lift", "export", "recipes")


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error form: one line and where to read more, no usage block
    (subcommand parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hotpatch", description="Hourglass Tokenizer (HoT) patches for video pose transformers."
    )
    parser.add_argument("--version", action="version", version=f"hotpatch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="print only the results")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:  # the source of truth: a listed command that cannot be imported is a bug
        try:
            module = importlib.import_module(f"hotpatch.cli.{name}")
        except ImportError as err:
            raise ImportError(
                f"hotpatch command {name!r} is listed in hotpatch.cli.COMMANDS but hotpatch.cli.{name} "
                f"cannot be imported ({type(err).__name__}: {err}); the installation is broken or incomplete"
            ) from err
        module.add_parser(sub)
        _add_global_options(sub.choices[name])
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """Also accept ``--debug`` / ``--quiet`` after the subcommand (``hotpatch profile X --quiet``)."""
    for flag, text in (("--debug", "show tracebacks and debug logs"), ("--quiet", "print only the results")):
        try:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
        except argparse.ArgumentError:
            pass  # the subcommand defines it itself


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except (HotpatchError, FileNotFoundError, OSError) as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception holds
        print(f"hotpatch {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
