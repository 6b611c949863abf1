"""The one head registry: every head registers where it is defined, naming the tasks it serves and, per task,
its training defaults (timm's and ActionFormer's pattern). One `build_head`, one option check, one list of
names per task; `featx train-head --head NAME` and every benchmark look heads up here.

    @register_head("lstm", classification=CLASSIFY)
    class LSTMHead(nn.Module): ...

A head serving a task under a cell (Skip RNNs: skip-lstm, skip-gru) registers once per cell. What a head's
logits are follows from its task and kind: classification heads give one row per video; multi-label heads one
per step; detection heads either K + 1 per step (`kind = "steps"`, 0: background) or segments.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

from featx.errors import FeatxError

TASKS = ("classification", "detection", "multilabel")
DEFAULT_HEAD = {"classification": "lstm", "detection": "actionformer", "multilabel": "lstm"}

# Training defaults; the CLI's unset options take these. Classification heads train on whole videos; the
# per-step heads on longer sequences in smaller batches; multi-label per-step heads at a higher rate
# (bench/multilabel.py); ActionFormer takes its THUMOS14 recipe (lr 1e-4, wd 0.05, 5 warm-up epochs, EMA) with
# more epochs and a larger batch than its 35 x batch 2, because datasets here are small (bench/detection.py).
CLASSIFY = dict(epochs=30, batch_size=32, lr=1e-3, weight_decay=1e-2, warmup_epochs=2)
STEPS = dict(epochs=40, batch_size=8, lr=1e-3, weight_decay=1e-2, warmup_epochs=2)
MULTILABEL = {**STEPS, "lr": 1e-2}
ACTIONFORMER = dict(epochs=60, batch_size=4, lr=2e-4, weight_decay=0.05, warmup_epochs=5)

# Options featx sets itself (never a user's --option), and the options that are sizes (positive integers).
_FIXED = ("in_dim", "num_classes", "cell", "pool")
_SIZES = ("hidden", "width", "channels", "layers", "heads", "levels")


@dataclass(frozen=True)
class Head:
    """One registered head for one task."""

    name: str
    task: str
    build: Callable  # (in_dim, num_classes, **options) -> nn.Module
    options_of: Callable  # where its options are declared (a class or function signature)
    defaults: dict = field(default_factory=dict)  # training defaults: epochs, batch_size, lr, ...
    skip: bool = False  # a Skip RNN: per-step updates, a budget, update fractions in its reports
    kind: str = "video"  # classification: video; multilabel: steps; detection: steps or segments

    def outputs(self, classes: int) -> int:
        """Logits per row for `classes` classes: detection step heads add the background class 0."""
        return classes + 1 if self.task == "detection" and self.kind == "steps" else classes


_REGISTRY: dict[tuple[str, str], Head] = {}


def register_head(name: str, cell: str | None = None, options_of: Callable | None = None, skip: bool = False,
                  **tasks: dict):
    """Class or function decorator: register the head `name` for each task given as `task=defaults`
    (classification, detection, multilabel); with `cell`, it is built with that cell. Returns it unchanged."""
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"register_head({name!r}): tasks must be among {TASKS}, not {sorted(unknown) or 'none'}")

    def register(builder):
        build = functools.partial(builder, cell=cell) if cell else builder
        for task, defaults in tasks.items():
            if (task, name) in _REGISTRY:
                raise ValueError(f"head {name!r} is registered twice for {task}")
            kind = getattr(builder, "kind", "steps" if task == "multilabel" else "video")
            _REGISTRY[(task, name)] = Head(name, task, build, options_of or builder, dict(defaults), skip, kind)
        return builder

    return register


HEAD_MODULES = ("seqmodels.heads", "seqmodels.detection.heads", "seqmodels.detection.actionformer")


def _load_all() -> None:
    """Import every module that defines heads, so that each has registered."""
    import importlib

    for module in HEAD_MODULES:
        importlib.import_module(module)


def heads(task: str) -> dict[str, Head]:
    """The heads of `task`, by name: its default head first, then alphabetically."""
    _load_all()
    names = sorted((name for t, name in _REGISTRY if t == task), key=lambda n: (n != DEFAULT_HEAD[task], n))
    return {name: _REGISTRY[(task, name)] for name in names}


def find_head(task: str, name: str | None) -> Head:
    """The head `name` of `task` (None: the task's default), or one error line saying what to do."""
    if task not in TASKS:
        raise FeatxError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    name = name or DEFAULT_HEAD[task]
    known = heads(task)
    if name in known:
        return known[name]
    if task != "detection" and name in heads("detection"):
        raise FeatxError(f"{name} is a detection head: train it with --annotations (and --task detection)")
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if task == "detection":
        raise FeatxError(f"--head {name!r} is not a detection head{hint} (known: {', '.join(known)})")
    what = {"classification": "head", "multilabel": "per-step head"}[task]
    raise FeatxError(f"unknown {what} {name!r}{hint} (known: {', '.join(known)})")


def check_options(head: Head, options: dict) -> None:
    """Each option is one the head declares, of the type of its default: true/false for flags, a whole number
    for counts (sizes at least 1), a finite number for rates (one error line naming it, never torch's error)."""
    declared = inspect.signature(head.options_of).parameters
    known = {k: p.default for k, p in declared.items()
             if k not in _FIXED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key, value in options.items():
        if key not in known:
            raise FeatxError(f"bad option for head {head.name!r}: no option {key!r} "
                             f"(its options: {', '.join(sorted(known)) or 'none'})")
        default = known[key]
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            want = "a finite number"
        else:
            continue
        if not ok:
            raise FeatxError(f"bad option for head {head.name!r}: {key} must be {want}, not {value!r}")
    bad = {k: v for k, v in options.items()
           if k in _SIZES and (not isinstance(v, int) or isinstance(v, bool) or v < 1)}
    if bad:
        raise FeatxError(f"bad option for head {head.name!r}: {', '.join(f'{k}={v!r}' for k, v in bad.items())} "
                         "must be a positive integer")


def build_head(name: str, in_dim: int, num_classes: int, task: str = "classification", **options):
    """The head `name` of `task` for `in_dim`-dimensional features and `num_classes` classes (detection step
    heads add the background class themselves); options: its constructor's, checked first."""
    head = find_head(task, name)
    check_options(head, options)
    try:
        return head.build(in_dim, head.outputs(num_classes), **options)
    except (TypeError, ValueError, AssertionError) as exc:  # torch's own checks: dropout range, divisibility
        raise FeatxError(f"bad option for head {name!r}: {str(exc).splitlines()[0]}") from None
