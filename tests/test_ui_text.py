"""The add-on's UI text reads like Blender's own: US spelling, Blender's terms, labels without a final period,
and a tooltip for every operator, property and choice, one short sentence without a final period (as
Blender's bl_i18n_utils checks ask of its own UI). Read from Blender's RNA, as Blender shows them."""

import re

import bpy
import pytest
from ui_text_rules import BLENDER_TERMS, BRITISH

from triposr_blender.ui import (
    install_ops,
    operators,
    panel,
    preferences,
    properties,
    references,
    translations,
)

pytestmark = pytest.mark.blender

LONGEST_TOOLTIP = 120  # characters: one short sentence
INHERITED = {"rna_type", "name", "bl_idname"}  # the RNA's own properties, not the add-on's


def add_on_classes():
    return [
        *properties.classes,
        *preferences.classes,
        *operators.classes,
        *install_ops.classes,
        *references.classes,
    ]


def texts(extension):
    """(where, kind, text) for every label and tooltip the add-on registers."""
    found = []
    for cls in add_on_classes():
        if issubclass(cls, bpy.types.Operator):
            category, name = cls.bl_idname.split(".")
            rna = getattr(getattr(bpy.ops, category), name).get_rna_type()
            found += [(cls.bl_idname, "label", cls.bl_label), (cls.bl_idname, "tooltip", rna.description)]
        else:
            rna = cls.bl_rna
        for prop in rna.properties:
            if prop.identifier in INHERITED or prop.is_hidden:
                continue
            where = f"{cls.__name__}.{prop.identifier}"
            found += [(where, "label", prop.name), (where, "tooltip", prop.description)]
            for item in getattr(prop, "enum_items", ()):
                found += [(f"{where}.{item.identifier}", "label", item.name)]
                found += [(f"{where}.{item.identifier}", "tooltip", item.description)]
    return found


def test_every_operator_property_and_choice_has_a_tooltip(extension):
    missing = [where for where, kind, text in texts(extension) if kind == "tooltip" and not text.strip()]
    assert not missing


def test_tooltips_are_one_short_sentence_without_a_final_period(extension):
    wrong = [
        f"{where}: {text!r}"
        for where, kind, text in texts(extension)
        if kind == "tooltip"
        and text
        and (text.endswith(".") or re.search(r"[.;] [A-Z0-9]", text) or len(text) > LONGEST_TOOLTIP)
    ]
    assert not wrong, "\n".join(wrong)


def test_labels_have_no_final_period(extension):
    wrong = [
        f"{where}: {text!r}"
        for where, kind, text in texts(extension)
        if kind == "label" and text.endswith(".")
    ]
    assert not wrong


def test_the_text_is_in_us_english_with_blenders_terms(extension):
    wrong = []
    for where, _kind, text in texts(extension):
        for british, american in BRITISH.items():
            if british in text.lower():
                wrong.append(f"{where}: {british} (US: {american}) in {text!r}")
        for ours, blenders in BLENDER_TERMS.items():
            if ours in text:
                wrong.append(f"{where}: {ours} (Blender: {blenders}) in {text!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("locale", sorted(translations.LANGUAGES))
def test_every_label_and_tooltip_is_translated(extension, locale):
    """A language is done when everything the add-on registers reads in it, panel titles included."""
    english = {text for _where, _kind, text in texts(extension) if text} | {
        cls.bl_label for cls in panel.classes
    }
    strings = translations.LANGUAGES[locale]
    assert sorted(english - set(strings)) == []
    assert not [text for text in strings if text not in english], "no translation of text the add-on lacks"


@pytest.mark.parametrize("locale", sorted(translations.LANGUAGES))
def test_translations_follow_the_same_rules_as_the_english(locale):
    for english, text in translations.LANGUAGES[locale].items():
        assert text.strip() and not text.endswith("."), (english, text)
        assert len(text) <= LONGEST_TOOLTIP + 20, (english, text)  # other languages run a little longer


def test_blender_takes_the_translations_in_their_form():
    """Blender registers them with the add-on; the bpy wheel, built without international support, has no
    language to show them in, so the form is what can be checked here."""
    bpy.app.translations.register("triposr-form-check", translations.translation_dictionary())
    bpy.app.translations.unregister("triposr-form-check")
