"""`featx weights list` and `featx weights pull`: the Typer sub-app (cli.py adds it as `weights`); the work is
featx.backbones.catalog's and featx.backbones.hub's."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from featx.console import OneLineErrors, Quiet, ReadableHelp, say, user_errors
from featx.errors import FeatxError

weights_app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Pretrained weights: which backbones have them, whether they are cached here, and fetching them "
    "(`featx weights pull NAME` on a connected machine; copy the cache to an offline one).",
)


def table(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines of left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


@weights_app.command("list", cls=ReadableHelp)
def list_command(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="NAME", show_default=False, help="Backbone names (any timm name too). Default: every clip backbone, the transformers video aliases, RAFT, the bundled default and the timm models in the Hugging Face cache.")] = None,
    paths: Annotated[bool, typer.Option("--paths", help="Also print where each file is (or belongs) in the cache.", rich_help_panel="Report")] = False,
    quiet: Quiet = False,
) -> None:
    """Every known backbone: family, feature dim, clip length, input size, where its weights come from, whether
    they are cached here, and their size."""
    from featx.backbones import catalog, hub

    with user_errors():
        rows = catalog.list_weights(names or None)
    lines = table([catalog.HEADER] + [r.cells() for r in rows])
    if paths:
        lines += [f"{r.name}: {r.location}" for r in rows if r.location is not None]
    lines.append(f"caches: {hub.torch_checkpoints_dir()} (torchvision), {hub.hf_cache_dir()} (Hugging Face)")
    say(lines, quiet)


@weights_app.command("pull", cls=ReadableHelp)
def pull_command(
    names: Annotated[list[str], typer.Argument(metavar="NAME", show_default=False, help="Backbone names: timm names, clip backbones (r3d_18, s3d, i3d-googlenet, ...), transformers video aliases (videomae-base, ...) or hf:<org>/<name>, clip:<org>/<name>, raft-small / raft-large.")],
    quiet: Quiet = False,
) -> None:
    """Download pretrained weights into the hub's cache (torch.hub's for torchvision, Hugging Face's for timm),
    checked by the hub; a file already cached is kept."""
    from featx.backbones import catalog

    with user_errors(on_interrupt="the files pulled before are in the cache; run the same command again for the rest"):
        failed = []
        for name in names:  # one name that fails does not keep the others from being pulled
            try:
                found = catalog.pull(name)
            except FeatxError as exc:
                failed.append(f"{name} ({exc})" if name not in str(exc) else str(exc))
                continue
            say([f"{name}: {found.path} ({found.source})"], quiet)
        if failed:
            raise FeatxError(f"{len(failed)} of {len(names)} not pulled: " + "; ".join(failed))
