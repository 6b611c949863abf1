"""Help reads well at 80 columns: no type tags, nothing cut off, -h works, usage names its arguments."""

import re

import pytest
from typer.testing import CliRunner

from cli import app

COMMANDS = ["extract", "info", "synth", "train-head", "evaluate", "predict", "zero-shot", "demo", "export", "import"]


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


def _help(command: str) -> str:
    return CliRunner().invoke(app, [command, "-h"], prog_name="featx", terminal_width=80, env={"COLUMNS": "80"}).stdout


def _sections(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Z][A-Za-z ]*:", line)]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet_and_progress_listed_last_under_general(command):
    text = _help(command)
    sections = _sections(text)
    assert sections[-1] == "General" and sections.count("General") == 1, sections
    general = text.split("\nGeneral:\n")[1]
    assert "-q, --quiet" in general and "-h, --help" in general
    # evaluate and zero-shot show no progress (they read a store and score it): the only commands without the option
    assert ("--progress / --no-progress" in general) == (command not in ("evaluate", "zero-shot"))


def test_extract_help_groups_its_options_by_topic():
    text = _help("extract")
    assert _sections(text) == ["Arguments", "Input and output", "Backbone", "Sampling and clips", "Speed",
                               "Optical flow", "Several machines", "General"]
    sampling = text.split("\nSampling and clips:\n")[1].split("\n\n")[0]
    assert all(option in sampling for option in ("--fps", "--clip-len", "--clip-stride", "--clip-tail"))


def test_the_three_frame_rates_have_three_names():
    """The sampling rate (extract --fps), the rate of videos synth makes (--video-fps) and the rate of the videos
    imported features came from (--source-fps) are three options, not one name with three meanings."""
    assert "--fps FPS" in _help("extract")
    assert "--video-fps" in _help("synth") and "--fps " not in _help("synth")
    imported = _help("import")
    assert "--source-fps" in imported and "--fps " not in imported
    assert "--clip-len" in imported and "--clip-stride" in imported and "--window" not in imported


def test_quiet_prints_nothing_and_still_writes(tmp_path, tiny_videos):
    from tests.conftest import TINY_ARGS

    store = tmp_path / "s"
    result = CliRunner().invoke(app, ["extract", str(tiny_videos), "-o", str(store), *TINY_ARGS, "-q"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "", result.output
    assert list(store.glob("part-*.parquet"))
    loud = CliRunner().invoke(app, ["info", str(store)])
    assert CliRunner().invoke(app, ["info", str(store), "--quiet"]).stdout == "" and "videos     4 ok" in loud.stdout


@pytest.mark.parametrize("sub", ["list", "pull"])
def test_the_weights_commands_read_like_the_others(sub):
    result = CliRunner().invoke(app, ["weights", sub, "-h"], prog_name="featx", terminal_width=80, env={"COLUMNS": "80"})
    text = result.stdout
    assert result.exit_code == 0 and re.match(rf"Usage: featx weights {sub} \[OPTIONS\] \[?NAME\.\.\.", text), text
    assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])[^>]*>", text), text
    assert _sections(text)[-1] == "General" and "-q, --quiet" in text.split("\nGeneral:\n")[1]


def test_every_out_option_is_also_dash_o():
    from typer.main import get_command

    commands = get_command(app).commands
    outs = {name: p.opts for name, c in commands.items() for p in getattr(c, "params", []) if p.name == "out"}
    options = {name: opts for name, opts in outs.items() if opts[0].startswith("-")}
    assert len(options) >= 7 and all(set(opts) == {"--out", "-o"} for opts in options.values()), outs
