"""Command-line usage errors (unknown option or command, missing value, bad choice) as one ``error:`` line.

Click prints a usage block and a capitalised sentence; the project's promise is one line naming the
command and the problem, with the nearest valid name when there is one.
"""

from __future__ import annotations

import difflib
import re

import typer

try:  # typer ≥ 0.25 vendors click; before, it uses the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

ClickException = click_exceptions.ClickException
UsageError = click_exceptions.UsageError
NoArgsIsHelpError = getattr(click_exceptions, "NoArgsIsHelpError", ())  # click < 8.2 has none
Abort = typer.Abort


def _nearest(word: str, candidates) -> str | None:
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.5)
    return close[0] if close else None


def _suggestion(exc: UsageError) -> str | None:
    """The nearest valid option, command or choice for what the user typed."""
    ctx, message = exc.ctx, exc.message or ""
    if isinstance(exc, click_exceptions.NoSuchOption):
        options = []
        if ctx is not None:
            options = [name for param in ctx.command.get_params(ctx) for name in (*param.opts, *param.secondary_opts)]
        return _nearest(exc.option_name, options or exc.possibilities or [])
    command = re.match(r"No such command '([^']+)'", message)
    if command:
        names = ctx.command.list_commands(ctx) if ctx is not None and hasattr(ctx.command, "list_commands") else []
        return _nearest(command.group(1), names)
    choice = re.search(r"'([^']*)' is not one of (.+)", message)
    if choice:
        return _nearest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
    return None


def usage_error_line(exc: ClickException) -> str:
    """``error: simcrop-bench run: no such option: --methd; did you mean --method?`` (one line)."""
    message = exc.format_message()
    if isinstance(exc, UsageError):
        # click's own hints ("(Possible options: …)", "Did you mean …?") give way to one nearest name
        message = re.sub(r"\s*\(Possible options: [^)]*\)|\s*Did you mean [^?]*\?", "", message)
        message = message.replace("Value error, ", "").rstrip(". ")
        suggestion = _suggestion(exc)
        if suggestion:
            message += f"; did you mean {suggestion}?"
        message = message[:1].lower() + message[1:]
        if exc.ctx is not None:
            message = f"{exc.ctx.command_path}: {message}"
    return "error: " + " ".join(message.split())
