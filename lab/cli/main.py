"""`halab`: thin command line over the lab's modules. Each command calls one function.

Errors print one actionable line and exit non-zero (2 bad input, 1 runtime failure, 3 a check
or claim that did not hold); `--verbose` adds the traceback; `--json` prints data as JSON.
Progress goes through the `halab` logger to stderr (`configure_logging`); stdout holds only data.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from typing import IO, NoReturn

from lab.cli import backup, capacity, chaos, cluster, record
from lab.cli.common import Handler
from lab.core.errors import LabError, mask


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are bad input too: one line and exit 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="halab", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks")
    p.add_argument("--json", action="store_true", help="print data as JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(handler=handler)
        return sp

    cluster.add_commands(command)
    record.add_commands(command)
    backup.add_commands(command)
    chaos.add_commands(command)
    capacity.add_commands(command)
    return p


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The bare message, flushed at once, written to whatever the stream is at the time (so a
    test's captured sys.stderr is honoured)."""

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream)
        self._fixed = stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._fixed:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(verbose: bool = False, stream: IO[str] | None = None) -> None:
    """What a user of `halab` (or a benchmark) sees: every message of the `halab` loggers at INFO
    (DEBUG with `verbose`), bare, on `stream` (stderr by default). Called again, it replaces its
    own handler rather than adding another."""
    logger = logging.getLogger("halab")
    for h in list(logger.handlers):
        if isinstance(h, _Handler):
            logger.removeHandler(h)
    handler = _Handler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` (teardown, heal) runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code: int = args.handler(args)
        return code
    except LabError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"halab: error: {mask(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("halab: interrupted; cleaned up what this command started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
