"""What every `featx` command shares at the terminal: help that reads well at 80 columns with options grouped
by topic, one `error:` line for every failure (usage errors included), the options every command takes
(`--progress/--no-progress`, `-q/--quiet`), and the printing of reports. cli.py holds the commands only."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Annotated, Iterable

import typer
from typer._click.core import Context as _Context
from typer._click.formatting import HelpFormatter as _HelpFormatter

from featx.errors import FeatxError

_UNBROKEN_HYPHEN = "\u2011"  # a hyphen that text wrapping does not break at
RESUME_HINT = "finished videos were committed; run the same command again to resume"
GENERAL = "General"  # the help section of the options every command takes

Progress = Annotated[bool, typer.Option(help="Show progress: a bar on a terminal, plain lines in a log file.",
                                        rich_help_panel=GENERAL)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but warnings and errors (no progress, no "
                                     "report; files are written as usual).", rich_help_panel=GENERAL)]


class _WholeWordsFormatter(_HelpFormatter):
    """Help wrapped at spaces only: an option name (--clip-len) or a value (s3://bucket/x-y) is never split
    across two lines at a hyphen, as textwrap does by default."""

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _UNBROKEN_HYPHEN))

    def write_dl(self, rows, *args, **kwargs) -> None:
        rows = [(a.replace("-", _UNBROKEN_HYPHEN), b.replace("-", _UNBROKEN_HYPHEN)) for a, b in rows]
        super().write_dl(rows, *args, **kwargs)

    def getvalue(self) -> str:
        return super().getvalue().replace(_UNBROKEN_HYPHEN, "-")


class _WholeWordsContext(_Context):
    formatter_class = _WholeWordsFormatter


class ReadableHelp(typer.core.TyperCommand):
    """Help that reads well at 80 columns: values named in capitals (STORE, FPS) instead of type tags such
    as <str> or <list[str]>, a plain usage line (`featx extract [OPTIONS] INPUTS...`), lines broken at
    spaces only, and options in sections by topic (each option's `rich_help_panel`), `General` last."""

    context_class = _WholeWordsContext

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = param.name.upper().replace("_", "-")
            if param.param_type_name == "argument":  # its name says it all: no "<list[str]>" beside it
                param.display_type_rich = lambda ctx: None

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list] = {"Arguments": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                topic = "Arguments" if param.param_type_name == "argument" else param_topic(param)
                sections.setdefault(topic, []).append(record)
        sections[GENERAL] = sections.pop(GENERAL, [])  # --progress, --quiet and --help close the list
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def param_topic(param) -> str:
    """The help section of an option: its `rich_help_panel`, else General (--help, --version)."""
    return getattr(param, "rich_help_panel", None) or GENERAL


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (an unknown option, a value of the wrong type) keep the contract of every other bad input:
    one `error:` line on stderr and exit code 1, not click's usage block and exit code 2. The command list gives
    each command's first sentence whole, wrapped, never cut with "..."."""

    context_class = _WholeWordsContext

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, command.get_short_help_str(limit=300)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        import sys

        from typer._click.exceptions import NoArgsIsHelpError, UsageError

        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:  # `featx` alone: the help
            exc.show()
            sys.exit(0)
        except UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} -h`)" if exc.ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(1)
        except typer.Abort:
            typer.echo("interrupted: nothing was written", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@contextlib.contextmanager
def user_errors(on_interrupt: str = "nothing was written"):
    """At the CLI boundary a FeatxError is one line on stderr and exit code 1, never a traceback; Ctrl-C is
    one line saying what was kept, and exit code 130. Library warnings raised meanwhile are held back: shown
    after a command that succeeds, dropped when the error line says what went wrong."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        except FeatxError as exc:
            _fail(f"error: {exc}", 1)
        except OSError as exc:  # the system refused: disk full, read-only, permissions, an unreachable bucket
            _fail(f"error: {os_reason(exc)}", 1)
        except UnicodeDecodeError as exc:  # a text input that is not UTF-8, where the reader did not name it
            _fail(f"error: a text file given is not UTF-8 ({exc.reason} at offset {exc.start}); save it as UTF-8", 1)
        except KeyboardInterrupt:
            _fail(f"interrupted: {on_interrupt}", 130)
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _fail(line: str, code: int):
    typer.echo(line, err=True)
    raise typer.Exit(code) from None


def os_reason(exc: OSError) -> str:
    """An OSError as one line: what failed, on which file."""
    what = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    return f"{what}: {where}" if where else what


def say(lines: Iterable[str], quiet: bool = False) -> None:
    """A command's report on stdout, unless --quiet."""
    if not quiet:
        for line in lines:
            typer.echo(line)


def notes(quiet: bool):
    """Where a command's side remarks (`note: ...`) go: stderr, or nowhere with --quiet."""
    return (lambda line: None) if quiet else (lambda line: typer.echo(line, err=True))


def typed(ctx, name: str) -> bool:
    """Whether option `name` was given on the command line (or in the environment), not left at its default."""
    return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") in ("COMMANDLINE", "ENVIRONMENT")


def head_options(options: list[str]) -> dict:
    """--option key=value pairs; values are read as JSON when they parse (numbers, true/false), else text."""
    parsed = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FeatxError(f"--option {item!r}: expected key=value, e.g. --option hidden=128")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


# -- featx info's report --------------------------------------------------------------------------------------
def _number(value, spec: str) -> str:
    """A manifest number as text; '-' where the video has none (a failed one)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _applies(config: dict) -> dict:
    """The settings that mean something for this store: clip settings for clip stores, inflation's for inflated
    backbones, flow's for flow streams; unset ones left out, except fps (None: every frame)."""
    clips, flow = config.get("clip_len") is not None, config.get("stream", "rgb") != "rgb"
    only = {"clip_tail": clips, "clip_stride": clips, "inflate_time": config.get("inflate") is not None,
            "flow_len": flow, "flow_method": flow}
    shown = {k: v for k, v in config.items() if only.get(k, True) and (v is not None or k == "fps")}
    if shown.get("fps", 0) is None:
        shown["fps"] = "every frame"
    return shown


def info_lines(info: dict) -> list[str]:
    """`featx info`'s report: the settings that apply, counts, shards, failures, problems; with --videos each
    video, with --inputs what is not done yet."""
    lines = [f"store      {info['store']}"]
    for key, value in _applies(info["config"] or {}).items():  # the settings the store was made with
        lines.append(f"{key:<14} {value}")
    lines.append(f"parts      {info['parts']} ({info['bytes'] / 2**20:.1f} MiB)")
    lines.append(f"rows       {info['rows']}")
    lines.append(f"videos     {info['videos_ok']} ok, {info['videos_failed']} failed")
    if len(info["shards"]) > 1 or "-" not in info["shards"]:
        for shard, counts in sorted(info["shards"].items()):
            lines.append(f"  shard {shard}: {counts['ok']} ok, {counts['failed']} failed")
    for fail in info["failed"]:
        lines.append(f"  failed {fail['video_id']} ({fail['path']}): {fail['error']}")
    if not info.get("pages_read", True):
        lines.append(f"pages      not read, footers only: `featx info --verify {info['store']}` reads every page")
    for problem in info["problems"]:
        lines.append(f"problem    {problem}")
    for row in info.get("videos", []):
        lines.append(f"  {row['video_id']}  {row['status']}  {_number(row['rows'], '.0f')} rows  "
                     f"{_number(row['duration'], '.2f')} s  {_number(row['fps'], '.3f')} fps")
    if "missing" in info:
        missing = info["missing"]
        done = "complete: every input has an ok or error row" if not missing else f"{len(missing)} not done yet"
        lines.append(f"inputs     {info['inputs']}, {done}")
        lines.extend(f"  missing {video_id}" for video_id in missing[:10])
    return lines


def several_values(*names: str) -> type:
    """A ReadableHelp command whose options `names` take every value after them up to the next option
    (`--classes "a dog" "a cat" -o x`), as if each were given with its own `--classes`: click's options take one
    value each."""

    class SeveralValues(ReadableHelp):
        def parse_args(self, ctx, args):
            spread, option = [], None
            for arg in args:
                if arg.startswith("-") and arg != "-":
                    option = arg if arg in names else None
                elif option is not None and spread[-1] != option:
                    spread.append(option)  # the second and later values: repeat the option before each
                spread.append(arg)
            return super().parse_args(ctx, spread)

    return SeveralValues
