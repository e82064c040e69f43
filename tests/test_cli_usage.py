"""Usage errors are one ``error:`` line with the nearest valid name, exit 2, for every verb of the app."""

from __future__ import annotations

import sys

import pytest
import typer

from simcrop_bench.cli.app import app, main

from .conftest import run_cli


def _verbs(group=None, path=()) -> list[tuple[tuple[str, ...], object]]:
    """Every leaf command of the app, found from the app itself so that new verbs are covered."""
    group = group or typer.main.get_command(app)
    found = []
    for name, command in sorted(group.commands.items()):
        if getattr(command, "commands", None):
            found += _verbs(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


VERBS = _verbs()


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the entry point in this process (parsing fails before any verb imports its dependencies)."""
    monkeypatch.setattr(sys, "argv", ["simcrop-bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert captured.out == ""
    return exit_info.value.code, captured.err


def _misspelled(option: str) -> str:
    """``--method`` -> ``--methd``: one letter dropped near the end."""
    return option[:-2] + option[-1]


def test_the_walk_finds_the_nested_verbs():
    paths = {" ".join(path) for path, _ in VERBS}
    assert {"run", "data splits import", "weights import", "plot efficiency", "bench probe"} <= paths


@pytest.mark.parametrize(("path", "command"), VERBS, ids=[" ".join(path) for path, _ in VERBS])
def test_misspelled_option_is_one_line_with_the_nearest_name(monkeypatch, capsys, path, command):
    options = [name for param in command.params for name in param.opts if name.startswith("--")] + ["--help"]
    option = max(options, key=len)  # the longest name: the least ambiguous to misspell
    code, err = _cli(monkeypatch, capsys, *path, _misspelled(option))
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err == (
        f"error: simcrop-bench {' '.join(path)}: no such option: {_misspelled(option)}; did you mean {option}?\n"
    )


def test_unknown_command_missing_value_and_bad_choice(monkeypatch, capsys):
    code, err = _cli(monkeypatch, capsys, "data", "splts", "import")
    assert code == 2 and err == "error: simcrop-bench data: no such command 'splts'; did you mean splits?\n"
    code, err = _cli(monkeypatch, capsys, "frobnicate")
    assert code == 2 and err == "error: simcrop-bench: no such command 'frobnicate'\n"
    code, err = _cli(monkeypatch, capsys, "run", "--task")
    assert code == 2 and err.startswith("error: ") and "--task" in err and err.count("\n") == 1
    code, err = _cli(monkeypatch, capsys, "run", "--method", "simcrop")
    assert code == 2 and err == "error: simcrop-bench run: missing option '--task' / '-t'\n"
    code, err = _cli(monkeypatch, capsys, "list", "method")
    assert code == 2 and err.startswith("error: simcrop-bench list: ") and err.endswith("; did you mean methods?\n")


def test_a_usage_error_in_a_real_process_has_no_traceback():
    result = run_cli("run", "--methd", "simcrop", "--task", "lung_seg")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: simcrop-bench run: no such option: --methd; did you mean --method?\n"
