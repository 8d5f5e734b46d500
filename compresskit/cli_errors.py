"""The CLI's entry point: every error one line with an exit code, interruptions named, library notes shown.

2: bad input (compresskit's own errors, usage errors, option types and ranges) or a full disk (nothing
half-written is kept; free space and rerun); 1: a failed run or gate;
130 / 143: interrupted by Ctrl-C / SIGTERM, with one line naming what was interrupted.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from .diskspace import disk_full_message, is_disk_full
from .errors import CompresskitError, DiskFull

err = Console(stderr=True)


class Interrupted(BaseException):
    """SIGTERM or SIGINT as an exception, so ``finally`` blocks run and temporary folders are removed.

    Not KeyboardInterrupt: typer turns that into a silent exit 130 before ``main`` could say what stopped.
    """

    EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
    NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code, self.how = self.EXIT_CODES[signum], self.NAMES[signum]


def _interrupt(signum, frame) -> None:
    raise Interrupted(signum)


def _interrupted(how: str) -> str:
    from .cli_measure import ACTIVITY  # lazy: CLI start-up

    during = f" during {ACTIVITY['now']}" if ACTIVITY["now"] else ""
    return (f"interrupted ({how}){during}; nothing half-written was kept: rerun the same command to resume "
            f"(finished steps and checkpoints are reused)")


def _one_line(message: str) -> str:
    return " ".join(message.split())


class _NoteHandler(logging.Handler):
    """The library's notes (``compresskit`` logger, warnings and up): one line each on stderr, each once."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = _one_line(record.getMessage())
        if message not in self.seen:
            self.seen.add(message)
            err.print(f"note: {escape(message)}", highlight=False, soft_wrap=True)


def _notes_to_stderr() -> None:
    logger = logging.getLogger("compresskit")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler())
        logger.propagate = False


def _click_exceptions():
    """(ClickException, Exit, Abort) of the click typer runs on (its own vendored copy in typer >= 0.2x)."""
    base = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    module = sys.modules[base.__module__]
    return base, getattr(module, "Exit", typer.Exit), getattr(module, "Abort", typer.Abort)


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run the typer app; turn every way it can end into one line on stderr and an exit code."""
    click_error, click_exit, click_abort = _click_exceptions()
    for signum in Interrupted.EXIT_CODES:
        signal.signal(signum, _interrupt)
    _notes_to_stderr()
    try:
        code = app(args=argv, standalone_mode=False)
    except CompresskitError as exc:
        err.print(f"[bold red]error:[/] {escape(_one_line(str(exc)))}", highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except (typer.Exit, click_exit) as exc:
        raise SystemExit(exc.exit_code) from None
    except Interrupted as exc:
        err.print(escape(_interrupted(exc.how)), highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except (KeyboardInterrupt, typer.Abort, click_abort):
        err.print(escape(_interrupted("Ctrl-C")), highlight=False, soft_wrap=True)
        raise SystemExit(130) from None
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        message = (disk_full_message(f"{Path(exc.filename).name}", Path(exc.filename).parent, 0) if exc.filename else
                   f"disk full: a write failed ({exc.strerror}); free space on the disk of the folder you write to, "
                   "then rerun the same command")
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise SystemExit(DiskFull.exit_code) from None
    except click_error as exc:  # usage errors, bad option values and ranges: one line, exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `compresskit` / `compresskit data`: the help text
            exc.show()
            raise SystemExit(2) from None
        ctx = getattr(exc, "ctx", None)
        command = " ".join(["compresskit", *ctx.command_path.split()[1:]]) if ctx else "compresskit"
        hint = f"; see `{command} --help`"
        message = _one_line(exc.format_message()).rstrip(".")
        err.print(f"[bold red]error:[/] {escape(message)}{escape(hint)}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)
