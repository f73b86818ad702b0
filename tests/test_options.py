"""The generation options (options.py): one default, one range and one help text for each, everywhere."""

import math

import pytest

from triposr_blender import options
from triposr_blender.core import defaults
from triposr_blender.options import GenerateOptions, MeshOptions, OptionError


def test_the_defaults_are_the_references_own_settings():
    generated = GenerateOptions()

    assert generated.resolution == defaults.DEFAULT_RESOLUTION == 256
    assert generated.threshold == defaults.DEFAULT_THRESHOLD == 25.0
    assert generated.foreground_ratio == defaults.DEFAULT_FOREGROUND_RATIO == 0.85
    assert generated.remove_background is True
    assert (generated.target_faces, generated.texture_size) == (0, 0), "decimation and baking start off"
    assert generated.remove_floaters and generated.floater_fraction == 0.05, "floaters go by default"


@pytest.mark.parametrize("size", [32, 16384])
def test_a_texture_size_out_of_range_is_refused(size):
    with pytest.raises(OptionError, match="texture_size must be 0 \\(off\\) or from 512 to 4096"):
        GenerateOptions(texture_size=size)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("resolution", 16, "resolution must be from 32 to 1024, not 16"),
        ("resolution", 64.5, "resolution must be a whole number"),
        ("threshold", -1.0, "threshold must be at least 0"),
        ("threshold", math.nan, "threshold must be a finite number"),
        ("foreground_ratio", 1.5, "foreground_ratio must be from 0.5 to 1"),
        ("target_faces", 3, "target_faces must be 0 (off) or at least 4"),
        ("remove_background", "yes", "remove_background must be true or false"),
        ("resolution", True, "resolution must be a number"),
    ],
)
def test_a_value_out_of_range_or_of_the_wrong_kind_names_the_option_and_its_range(name, value, message):
    with pytest.raises(OptionError, match="^" + message.replace("(", "\\(").replace(")", "\\)")):
        GenerateOptions(**{name: value})


def test_off_values_and_values_in_range_are_kept_in_the_options_own_type():
    chosen = GenerateOptions(resolution=64.0, threshold=3, target_faces=0, texture_size=1024)

    assert chosen.resolution == 64 and isinstance(chosen.resolution, int)
    assert chosen.threshold == 3.0 and isinstance(chosen.threshold, float)
    assert (chosen.target_faces, chosen.texture_size) == (0, 1024)


def test_the_mesh_options_are_the_generate_options_after_the_image():
    chosen = GenerateOptions(remove_background=False, resolution=64, threshold=1.5, target_faces=100)

    assert chosen.mesh == MeshOptions(resolution=64, threshold=1.5, target_faces=100)


def test_from_a_message_unknown_names_are_refused_and_missing_ones_take_their_defaults():
    assert GenerateOptions.from_dict({"resolution": 64}) == GenerateOptions(resolution=64)
    with pytest.raises(OptionError, match="Unknown option\\(s\\): resolutoin"):
        GenerateOptions.from_dict({"resolutoin": 64})


def test_a_round_trip_through_a_message_keeps_every_option():
    chosen = GenerateOptions(remove_background=False, foreground_ratio=0.7, texture_size=2048)

    assert GenerateOptions.from_dict(chosen.as_dict()) == chosen


@pytest.mark.parametrize(
    ("option", "text", "value"),
    [
        (options.RESOLUTION, "128", 128),
        (options.THRESHOLD, "2.5", 2.5),
        (options.REMOVE_BACKGROUND, "False", False),
    ],
)
def test_typed_values_are_parsed_as_the_option_takes_them(option, text, value):
    assert option.parse(text) == value


@pytest.mark.parametrize(("option", "text"), [(options.THRESHOLD, "nan"), (options.REMOVE_BACKGROUND, "1")])
def test_typed_values_that_are_no_value_of_the_option_are_refused(option, text):
    with pytest.raises(OptionError, match=option.name):
        option.parse(text)


def test_the_panel_accepts_the_off_value_where_typing_it_is_how_one_turns_it_off():
    assert options.TARGET_FACES.ui_minimum == 0, "Target Faces 0 keeps every face"
    assert options.TEXTURE_SIZE.ui_minimum == 512, "the Color menu, not a 0, turns the texture off"


def test_every_option_has_a_label_a_help_text_and_a_default_in_its_range():
    for option in options.OPTIONS.values():
        assert option.label and option.description.strip() and not option.description.endswith(".")
        assert option.check(option.default) == option.default


def test_a_model_folder_becomes_absolute_and_a_repo_id_stays_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "models" / "tsr").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "models")
    assert options.absolute_model_source("tsr") == str(tmp_path / "models" / "tsr")
    assert options.absolute_model_source("stabilityai/TripoSR") == "stabilityai/TripoSR"
