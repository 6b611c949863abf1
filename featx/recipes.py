"""Named extraction settings of published features: `featx extract --recipe NAME` (`--list-recipes` prints them).

A recipe fills the options the user did not give, nothing else, and the store records the resolved values (not
the name), so a store made with a recipe is identical to one made with the same options typed out. The backbone is
the published one where featx has it (`i3d`, whose Kinetics weights are a local file: --weights rgb_imagenet.pt),
else featx's nearest (S3D, Inception-v1 inflated with separable convolutions); it is filled only when --backbone
is not given, and its input size is the published features' (checked in the tests).
"""

from __future__ import annotations

import difflib
import textwrap
from dataclasses import dataclass

from featx.errors import FeatxError


@dataclass(frozen=True)
class Recipe:
    summary: str  # the published features
    source: str  # where the numbers come from
    backbone: str  # the published backbone, or featx's nearest (filled only without --backbone)
    fps: float | None  # sampling rate; None: every frame (the video's native rate)
    clip_len: int  # frames per clip
    clip_stride: int  # frames between clip starts
    input_size: int  # H = W of the frames fed to the network (the backbone's own crop)

    def options(self) -> dict:
        """The extract options this recipe sets."""
        return {"backbone": self.backbone, "fps": self.fps, "clip_len": self.clip_len, "clip_stride": self.clip_stride}


RECIPES = {
    "thumos-i3d-style": Recipe(
        summary="THUMOS14 I3D features of ActionFormer, TriDet and OpenTAD: 16-frame clips every 4 frames at the "
        "native rate (~30 fps), 224 x 224; one row per 4/30 s",
        source="ActionFormer README (THUMOS14 details) and configs/thumos_i3d.yaml (feat_stride 4, num_frames 16); "
        "OpenTAD thumos-14/features_i3d_pad.py (feature_stride 4, offset_frames 8)",
        backbone="i3d", fps=None, clip_len=16, clip_stride=4, input_size=224,
    ),
    "anet-i3d-style": Recipe(
        summary="ActivityNet 1.3 I3D features of ActionFormer: 16-frame clips every 16 frames at 25 fps, 224 x 224",
        source="ActionFormer configs/anet_i3d.yaml (feat_stride 16, num_frames 16, default_fps 25)",
        backbone="s3d", fps=25.0, clip_len=16, clip_stride=16, input_size=224,
    ),
    "anet-tsp-style": Recipe(
        summary="ActivityNet 1.3 TSP features (R(2+1)D-34): non-overlapping 16-frame clips at 15 fps, 112 x 112",
        source="ActionFormer README (ActivityNet details) and configs/anet_tsp.yaml (feat_stride 16, num_frames "
        "16, default_fps 15); TSP (Alwassel et al. 2021) feeds 112 x 112 crops",
        backbone="r2plus1d_18", fps=15.0, clip_len=16, clip_stride=16, input_size=112,
    ),
    "montes-c3d-style": Recipe(
        summary="C3D fc6 features of Montes et al. 2016 (the montes-lstm head's paper): non-overlapping 16-frame "
        "clips at the native rate, 112 x 112",
        source="Montes et al., Temporal Activity Detection in Untrimmed Videos with Recurrent Neural Networks "
        "(2016): C3D fc6 of each 16-frame clip, clips not overlapping",
        backbone="c3d", fps=None, clip_len=16, clip_stride=16, input_size=112,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FeatxError(f"unknown --recipe {name!r} (known: {', '.join(RECIPES)}){hint}")
    return RECIPES[name]


def apply_recipe(name: str, options: dict, given: set[str]) -> dict:
    """`options` with recipe `name` filling every option it sets that is not in `given` (the options on the
    command line). The backbone is filled only when not given: the rest of a recipe fits any clip backbone."""
    recipe = get_recipe(name)
    return {**options, **{k: v for k, v in recipe.options().items() if k not in given}}


def describe() -> list[str]:
    """--list-recipes: per recipe what it sets and where the numbers come from."""
    lines = []
    for name, r in RECIPES.items():
        rate = f"--fps {r.fps:g}" if r.fps else "every frame (no --fps)"
        lines.append(name)
        for text in (r.summary, f"sets: --backbone {r.backbone} --clip-len {r.clip_len} --clip-stride {r.clip_stride}, "
                     f"{rate}; input {r.input_size} x {r.input_size} ({r.backbone}'s own)", f"from: {r.source}"):
            lines += textwrap.wrap(text, width=80, initial_indent="  ", subsequent_indent="    ")
    return lines
