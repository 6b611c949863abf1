"""extract --recipe: named settings of published features fill only the options not given; the store's config
holds the values (never the name); --list-recipes says what each sets and where the numbers come from."""

import pytest
from typer.testing import CliRunner

from cli import app
from featx.backbones import extraction_config
from featx.backbones.video3d import CLIP_MODELS
from featx.errors import FeatxError
from featx.recipes import RECIPES, apply_recipe, describe, get_recipe

runner = CliRunner()


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_names_a_clip_backbone_with_its_input_size_and_a_valid_config(name):
    recipe = RECIPES[name]
    assert CLIP_MODELS[recipe.backbone].crop == recipe.input_size
    config = extraction_config(**recipe.options())
    assert (config.clip_len, config.stride, config.fps) == (recipe.clip_len, recipe.clip_stride, recipe.fps)


def test_the_published_grids():
    thumos, anet = get_recipe("thumos-i3d-style"), get_recipe("anet-i3d-style")
    assert (thumos.fps, thumos.clip_len, thumos.clip_stride, thumos.input_size) == (None, 16, 4, 224)
    assert (anet.fps, anet.clip_len, anet.clip_stride) == (25.0, 16, 16)


def test_a_recipe_fills_only_what_was_not_given():
    options = {"backbone": "x", "fps": 8.0, "clip_len": None, "clip_stride": None, "dtype": "float32"}
    filled = apply_recipe("thumos-i3d-style", options, given={"fps"})
    assert filled == {"backbone": "i3d", "fps": 8.0, "clip_len": 16, "clip_stride": 4, "dtype": "float32"}
    filled = apply_recipe("anet-tsp-style", options, given={"backbone", "clip_len"})
    assert (filled["backbone"], filled["clip_len"], filled["clip_stride"], filled["fps"]) == ("x", None, 16, 15.0)


def test_an_unknown_recipe_suggests_close_names():
    with pytest.raises(FeatxError, match="did you mean thumos-i3d-style"):
        get_recipe("thumos-i3d")


def test_list_recipes_needs_no_inputs_and_fits_80_columns():
    result = runner.invoke(app, ["extract", "--list-recipes"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == describe()
    for name in RECIPES:
        assert name in result.stdout
    assert "from: ActionFormer" in result.stdout and all(len(line) <= 80 for line in describe())


def test_extract_runs_with_the_resolved_values_and_the_store_records_them_not_the_name(tmp_path, tiny_videos, monkeypatch):
    seen = {}

    def fake_extract(videos, out, config, options):  # the extraction itself is tested elsewhere
        seen["config"] = config
        raise FeatxError("stopped here")

    monkeypatch.setattr("featx.pipeline.extract", fake_extract)
    args = ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), "--recipe", "anet-tsp-style", "--clip-stride", "8",
            "--random-init", "--no-progress"]
    result = runner.invoke(app, args)
    assert "stopped here" in result.stderr
    config = seen["config"]
    assert (config.backbone, config.fps, config.clip_len, config.clip_stride) == ("r2plus1d_18", 15.0, 16, 8)
    assert "recipe" not in config.to_dict() and "anet-tsp-style" not in config.to_json()
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), "--recipe", "nope"])
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown --recipe 'nope'")
