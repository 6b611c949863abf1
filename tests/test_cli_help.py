"""Help reads well at 80 columns: no type tags, nothing cut off, -h works, usage names its arguments."""

import re

import pytest
from typer.testing import CliRunner

from cli import app

COMMANDS = ["extract", "info", "synth", "train-head", "evaluate", "predict", "demo", "export", "import"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_has_no_type_tags_or_cut_lines(command):
    result = CliRunner().invoke(app, [command, "-h"], prog_name="featx", terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])[^>]*>", text), text
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines()), text
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: featx {command} [OPTIONS]")
    assert "{" not in usage and "<" not in usage


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_at_80_columns_never_splits_an_option_name_or_value_at_a_hyphen(command):
    args = [command, "-h"] if command else ["-h"]
    text = CliRunner().invoke(app, args, prog_name="featx", terminal_width=80, env={"COLUMNS": "80"}).stdout
    broken = [line for line in text.splitlines() if re.search(r"\w-$", line.rstrip())]
    assert not broken, broken  # textwrap's default would end lines with "--clip-" and start the next with "len"
    if command:
        from typer.main import get_command

        options = [o for p in get_command(app).commands[command].params for o in p.opts if o.startswith("--")]
        assert options and all(o in text.split() or f"{o}," in text.split() for o in options), options


def test_usage_names_arguments_in_capitals():
    text = CliRunner().invoke(app, ["predict", "--help"], prog_name="featx", terminal_width=80).stdout
    assert text.splitlines()[0] == "Usage: featx predict [OPTIONS] RUN SOURCES..."
    assert "  -o, --out OUT " in text


@pytest.mark.parametrize("args", [["extract", "v", "--out", "s", "--fps", "abc"], ["extract", "v", "--out", "s", "--bogus"],
                                  ["demo", "--videos", "7"], ["nosuch"]])
def test_usage_errors_are_one_error_line_and_exit_1(args):
    from tests.helpers import one_error_line

    one_error_line(CliRunner().invoke(app, args, prog_name="featx"), "-h`)")
