"""The ``botfactory`` command: a click group whose errors are formatted in one place."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import click
from rich.markup import escape

from botfactory.cli._output import stderr
from botfactory.config import Settings
from botfactory.errors import BotfactoryError

__all__ = ["cli", "load_settings", "main", "run", "run_async"]

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """botfactory: build, run and operate AI agents on your own machines."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI flags applied on top of file and environment."""
    return Settings.load(**overrides)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine to completion."""
    return asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit status (tested in-process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    try:
        cli.main(args=args, prog_name="botfactory", standalone_mode=False)
    except click.exceptions.Abort:
        stderr.print("aborted")
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BotfactoryError as exc:
        if verbose:
            stderr.print_exception()
        # Messages quote user input (ids, names): escape it, and leave long lines whole for logs and scripts.
        stderr.print(f"[red]error[/red] ({exc.code}): {escape(exc.message)}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
