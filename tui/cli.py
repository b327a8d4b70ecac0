"""The ``qms-panel`` command line.

``qms-panel`` alone opens the app; ``qms-panel --demo`` opens it on a sample project and a
dev server it starts itself. Subcommands live one per module in :mod:`tui.commands`; each
module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

Exit codes: 0 success, 1 the operation was refused or failed, 2 usage or configuration
error. Errors are one line on stderr, never a traceback (set ``QMS_PANEL_DEBUG=1`` to see
one); with ``--json`` the same failure is also one object on stdout. A subcommand's output is
made safe for the terminal in one place, :func:`tui.cli_output.safe_output`, and library log
records never reach the terminal (:mod:`tui.library_logs`).
What the commands share with this module (settings from flags, JSON, one-line failures)
is in :mod:`tui.cli_common`: a command never imports this module, which loads commands by name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from core.errors import QmsPanelError, UsageError
from tui.cli_common import SETTING_FLAGS, setting_overrides, settings_from_args
from tui.cli_output import EXIT_FAILED, EXIT_USAGE, report_error, report_failure, safe_output
from tui.library_logs import quiet_library_logs


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UsageError(f"{message} (see {self.prog} --help)")


def _settings_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (flags > QMS_PANEL_* env > qms-panel.toml > defaults)")
    group.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                       help="TOML settings file (default: ./qms-panel.toml if present)")
    for field, help_text in SETTING_FLAGS.items():
        group.add_argument("--" + field.replace("_", "-"), dest=field, metavar=field.split("_")[-1].upper(),
                           default=argparse.SUPPRESS, help=help_text)
    return parent


def command_names() -> list[str]:
    """Subcommand names: the modules of :mod:`tui.commands` (found without importing them)."""
    import tui.commands as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"tui.commands.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``only``) one whose other subcommands are stubs (``""``: all of them).

    Command modules may import heavy libraries (the MCP SDK, docker, Textual); loading all of
    them costs seconds, so a command line that names a subcommand loads just that one.
    """
    parent = _settings_parent()
    parser = _Parser(prog="qms-panel", parents=[parent],
                     description="Control panel for QMS agents in Docker containers.")
    parser.add_argument("--demo", action="store_true", help="open the panel on a sample project and dev server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in command_names():
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        mod = _load(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP,
                           parents=[parent] if getattr(mod, "USES_SETTINGS", True) else [])
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _named_command(argv: list[str]) -> str | None:
    names = set(command_names())
    return next((a for a in argv if a in names), None)


def run_guarded(func: Callable[[], int], *, as_json: bool = False) -> int:
    """Run ``func`` and turn every error into one line (and one JSON object) and an exit code."""
    try:
        return func()
    except KeyboardInterrupt:
        return report_failure("Interrupted", "stopped by the operator (Ctrl-C)", 130, as_json=as_json)
    except BrokenPipeError:  # whoever read stdout has gone (`| head`): nothing is left to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return EXIT_FAILED
    except QmsPanelError as err:
        if os.environ.get("QMS_PANEL_DEBUG"):
            raise
        return report_error(err, as_json=as_json)
    except Exception as err:  # noqa: BLE001 - last line of defence: never a traceback
        if os.environ.get("QMS_PANEL_DEBUG"):
            raise
        detail = f"{type(err).__name__}: {err}"
        return report_failure("Internal error", detail, EXIT_FAILED, as_json=as_json,
                              line=f"internal error: {detail} (set QMS_PANEL_DEBUG=1 for the traceback)")


def _run_app(args: argparse.Namespace) -> int:
    if args.demo:
        from tui.demo import run_demo

        config = getattr(args, "config", None)
        return _leave(run_demo(setting_overrides(args), Path(config) if config else None))
    settings = settings_from_args(args)
    from tui.launch import run_app

    return _leave(run_app(settings))


def _leave(code: int) -> int:
    """The panel has ended and cleaned up: exit now. Textual's input thread can spin on a terminal
    that has gone (a closed tmux pane), and the interpreter would wait for it forever at exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    named = _named_command(argv)
    if named is None:  # the panel: Textual owns the terminal, and its text is made safe in the widgets
        return _main(argv, named)
    with safe_output():
        return _main(argv, named)


def _main(argv: list[str], named: str | None) -> int:
    as_json = "--json" in argv  # known before the parser has run: its errors are JSON too
    # no command named: the panel opens, and no command module loads (all of them cost half a
    # second before the first frame); only the full help needs them all
    only = named if named is not None else (None if {"-h", "--help"} & set(argv) else "")
    try:
        args = build_parser(only=only).parse_args(argv)
        if named is not None and args.command != named:  # the name was a flag's value: load everything
            args = build_parser().parse_args(argv)
    except UsageError as err:
        return report_failure(err.title, err.detail, EXIT_USAGE, as_json=as_json, line=err.detail)
    as_json = bool(getattr(args, "json", False))
    runner = getattr(args, "_run", None)
    if runner is None:
        return run_guarded(lambda: _run_app(args))
    return run_guarded(lambda: _run_command(runner, args), as_json=as_json)


def _run_command(runner: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    quiet_library_logs()  # before the command runs: library records never reach the terminal
    return runner(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
