"""Every panel and the preferences drawn in every state, into a layout that records and checks each call.

Background Blender has no window, so nothing can draw the real UI. ``RecordingLayout`` stands in for
``bpy.types.UILayout``: each call must name a real UILayout function with real keyword arguments and
valid enum values (icon names change between Blender versions), each property drawn must exist on its
data (RNA), and each operator drawn must be registered, with the properties set on its button.
"""

import types
from dataclasses import dataclass

import bpy
import pytest
from conftest import FIXTURE_IMAGE
from ui_text_rules import BLENDER_TERMS, BRITISH

from triposr_blender import dependencies
from triposr_blender.backends.backend import Job
from triposr_blender.backends.types import ModelState
from triposr_blender.ui import install_ops, panel, preferences
from triposr_blender.ui.session import SESSION
from triposr_blender.worker.client import WorkerClient

pytestmark = pytest.mark.blender

UI_FUNCTIONS = bpy.types.UILayout.bl_rna.functions
UI_ATTRIBUTES = set(bpy.types.UILayout.bl_rna.properties.keys())
SUB_LAYOUTS = {"row", "column", "box", "split", "column_flow", "grid_flow", "panel_prop"}
PROPERTY_FUNCTIONS = {"prop", "template_ID", "prop_search", "prop_enum", "props_enum", "prop_menu_enum"}


class RecordingLayout:
    """Records what is drawn into ``calls`` as (function, detail); fails on anything Blender would refuse."""

    def __init__(self, calls: list):
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        assert name in UI_ATTRIBUTES, f"UILayout has no attribute {name!r}"
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        function = UI_FUNCTIONS.get(name)
        assert function is not None, f"UILayout has no function {name!r}"
        return lambda *args, **kwargs: self._call(name, function, args, kwargs)

    def _call(self, name, function, args, kwargs):
        parameters = [parameter for parameter in function.parameters if not parameter.is_output]
        names = [parameter.identifier for parameter in parameters]
        assert not set(kwargs) - set(names), f"{name}() takes no {sorted(set(kwargs) - set(names))}"
        bound = {**dict(zip(names, args, strict=False)), **kwargs}
        for key, value in bound.items():
            parameter = function.parameters[key]
            if parameter.type == "ENUM" and not parameter.is_enum_flag:
                allowed = {item.identifier for item in parameter.enum_items}
                assert value in allowed, f"{name}({key}={value!r}): not one of Blender's values"
        if name in PROPERTY_FUNCTIONS:
            data, prop = bound["data"], bound["property"]
            assert prop in data.bl_rna.properties, f"{type(data).__name__} has no property {prop!r}"
            self.calls.append((name, prop))
        elif name == "operator":
            return self._operator(bound["operator"])
        else:
            self.calls.append((name, bound.get("text", "")))
            if name == "label":
                check_label(bound.get("text", ""))
        if name in SUB_LAYOUTS:
            return RecordingLayout(self.calls)
        return 1 if name == "icon" else None

    def _operator(self, idname):
        group, operator = idname.split(".")
        try:
            properties = getattr(getattr(bpy.ops, group), operator).get_rna_type().properties
        except KeyError:
            pytest.fail(f"the operator {idname} is drawn but not registered")
        self.calls.append(("operator", idname))
        return OperatorButton(idname, properties)


def check_label(text: str) -> None:
    """A drawn label reads like Blender's: no final period, US spelling, Blender's terms (ui_text_rules)."""
    assert not text.endswith("."), f"a label ends with a period: {text!r}"
    assert not [word for word in BRITISH if word in text.lower()], f"British spelling in {text!r}"
    assert not [term for term in BLENDER_TERMS if term in text], f"not Blender's term in {text!r}"


class OperatorButton:
    """What ``layout.operator`` returns: setting a property checks that the operator has it."""

    def __init__(self, idname, properties):
        object.__setattr__(self, "idname", idname)
        object.__setattr__(self, "properties", properties)

    def __setattr__(self, name, value):
        assert name in self.properties, f"{self.idname} has no property {name!r}"


class Context:
    """bpy.context, with the editor and its region as the draw would see them in a window."""

    def __init__(self, area_type: str):
        self.area = types.SimpleNamespace(type=area_type)
        self.region = types.SimpleNamespace(width=320)

    def __getattr__(self, name):
        return getattr(bpy.context, name)


class PanelSelf:
    """``self`` for a panel's or the preferences' draw(): the recording layout, the rest from ``owner``."""

    def __init__(self, owner, layout):
        self.owner = owner
        self.layout = layout

    def __getattr__(self, name):
        return getattr(self.owner, name)


def draw(owner, draw_function, area_type="VIEW_3D") -> list:
    calls = []
    draw_function(PanelSelf(owner, RecordingLayout(calls)), Context(area_type))
    return calls


@dataclass
class InstallJobState:
    """An install job as the dependency box reads it."""

    state: str = dependencies.RUNNING
    stage: str = "downloading"
    message: str = "Downloading torch"
    fraction: float = 0.3
    downloaded_mb: float = 120.0
    expected_mb: float = 440.0
    error: str = ""
    device: dict = None

    @property
    def running(self):
        return self.state == dependencies.RUNNING


DEPENDENCY_STATES = {
    "missing": (("torch",), None),
    "installing": (("torch",), InstallJobState()),
    "install failed": (("torch",), InstallJobState(state=dependencies.FAILED, error="pip failed")),
    "install cancelled": (("torch",), InstallJobState(state=dependencies.CANCELLED, message="Canceled")),
    "ready": ((), None),
}
MODEL_STATES = {
    "not loaded": (ModelState(), None),
    "loading": (ModelState(), "load"),
    "loaded": (ModelState(loaded=True, device="cpu", memory_bytes=2**30, cpu_fast=True), None),
    "on a server": (
        ModelState(loaded=True, source="stabilityai/TripoSR", device="the server (cuda:0)"),
        None,
    ),
}
JOB_STATES = {"idle": None, "generating": "generate"}
INPUTS = ("FILE", "IMAGE", "REFERENCE")


@pytest.fixture
def ui_state(extension, monkeypatch, tmp_path):
    """Sets the state every draw reads: dependencies, install job, model, running job."""
    client = WorkerClient()  # never started: only its model state is read
    monkeypatch.setattr(SESSION, "client", client)
    monkeypatch.setattr(SESSION, "active", [])

    def set_state(dependency_state="ready", model_state="not loaded", job_state="idle"):
        missing, job = DEPENDENCY_STATES[dependency_state]
        monkeypatch.setattr(dependencies, "_status", dependencies.Status(tmp_path, missing))
        monkeypatch.setattr(install_ops, "_job", job)
        client.model_state, model_job = MODEL_STATES[model_state]
        commands = [command for command in (model_job, JOB_STATES[job_state]) if command]
        SESSION.active[:] = [Job(number, kind) for number, kind in enumerate(commands)]

    return set_state


@pytest.fixture
def addon_preferences(extension):
    """The add-on's preferences, as Blender keeps them for an enabled add-on."""
    addon = bpy.context.preferences.addons.new()
    addon.module = preferences.TripoSRPreferences.bl_idname
    yield addon.preferences
    bpy.context.preferences.addons.remove(addon)


@pytest.fixture(params=INPUTS)
def input_source(request, extension):
    """Each input source, with something to show: the fixture image, an Image, a selected image empty."""
    settings = extension
    image = bpy.data.images.load(str(FIXTURE_IMAGE), check_existing=True)
    empty = bpy.data.objects.new("Reference", None)
    empty.empty_display_type = "IMAGE"
    empty.data = image
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty
    settings.input_source, settings.filepath, settings.image = request.param, str(FIXTURE_IMAGE), image
    yield request.param
    bpy.data.objects.remove(empty)
    settings.image = None


@pytest.mark.parametrize("job_state", JOB_STATES)
@pytest.mark.parametrize("dependency_state", DEPENDENCY_STATES)
def test_the_main_panel_draws_in_every_state(ui_state, input_source, dependency_state, job_state):
    ui_state(dependency_state, job_state=job_state)

    calls = draw(panel.VIEW3D_PT_triposr, panel.VIEW3D_PT_triposr.draw)

    ready = dependency_state == "ready"
    assert (("operator", "triposr.generate") in calls) == (ready and job_state == "idle")
    assert (("operator", "triposr.cancel") in calls) == (ready and job_state == "generating")
    assert (("operator", "triposr.cancel_dependency_install") in calls) == (dependency_state == "installing")
    if ready and input_source == "FILE":
        assert ("prop", "filepath") in calls
    if ready and input_source == "IMAGE":
        assert ("template_ID", "image") in calls


def test_the_options_panel_draws_every_option(ui_state):
    ui_state()

    calls = draw(panel.VIEW3D_PT_triposr_options, panel.VIEW3D_PT_triposr_options.draw)

    drawn = {detail for function, detail in calls if function == "prop"}
    expected = {"remove_background", "foreground_ratio", "resolution", "threshold", "target_faces"}
    assert expected | {"color_mode", "texture_size", "shade_smooth", "device", "placement"} <= drawn


@pytest.mark.parametrize("model_state", MODEL_STATES)
def test_the_model_panel_draws_each_model_state(ui_state, model_state):
    ui_state(model_state=model_state)

    calls = draw(panel.VIEW3D_PT_triposr_model, panel.VIEW3D_PT_triposr_model.draw)

    assert (("operator", "triposr.unload_model") in calls) == (model_state == "loaded")
    assert (("operator", "triposr.load_model") in calls) == (model_state == "not loaded")
    assert any(function == "progress" for function, _ in calls) == (model_state == "loading")


@pytest.mark.parametrize("model_state", MODEL_STATES)
@pytest.mark.parametrize("dependency_state", DEPENDENCY_STATES)
def test_the_preferences_draw_in_every_state(ui_state, addon_preferences, dependency_state, model_state):
    ui_state(dependency_state, model_state)

    calls = draw(addon_preferences, preferences.TripoSRPreferences.draw, area_type="PREFERENCES")

    assert ("prop", "model_source") in calls and ("prop", "cpu_fast") in calls
    if dependency_state == "ready":
        assert ("operator", "triposr.remove_dependencies") in calls


# --- Re-mesh, Adjust Last Operation and the Remove dialog ---------------------------------------------------


class OperatorStandIn:
    """An operator's ``self`` as its draw() reads it: its properties' RNA, each at its default value."""

    def __init__(self, idname: str, **values):
        group, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, group), name).get_rna_type()
        self.bl_rna = rna
        for prop in rna.properties:
            if prop.identifier != "rna_type":
                default = (
                    getattr(prop, "default_array", None) if getattr(prop, "is_array", False) else prop.default
                )
                setattr(self, prop.identifier, values.get(prop.identifier, default))


@pytest.fixture
def triposr_object(extension, new_objects):
    """A TripoSR object (what Generate makes), active and selected."""
    assert bpy.ops.triposr.generate(filepath=str(FIXTURE_IMAGE)) == {"FINISHED"}
    return bpy.context.active_object


def test_the_remesh_section_shows_for_a_triposr_object_with_what_it_was_made_at(ui_state, triposr_object):
    ui_state()
    assert panel.VIEW3D_PT_triposr_remesh.poll(bpy.context)

    calls = draw(panel.VIEW3D_PT_triposr_remesh, panel.VIEW3D_PT_triposr_remesh.draw)

    assert ("operator", "triposr.remesh") in calls and ("operator", "triposr.remove_data") in calls
    assert any(
        function == "label" and text.startswith("Made at 48, threshold 0.41") for function, text in calls
    )


def test_the_remesh_section_says_when_an_objects_triposr_data_is_damaged(ui_state, triposr_object):
    ui_state()
    triposr_object["triposr"]["options"] = "not json"

    calls = draw(panel.VIEW3D_PT_triposr_remesh, panel.VIEW3D_PT_triposr_remesh.draw)

    assert ("label", "Its TripoSR data is damaged: Generate it again") in calls


def test_the_remesh_section_is_hidden_for_other_objects(extension, new_objects):
    plain = bpy.data.objects.new("Plain", bpy.data.meshes.new("Plain"))
    bpy.context.scene.collection.objects.link(plain)
    bpy.context.view_layer.objects.active = plain
    assert not panel.VIEW3D_PT_triposr_remesh.poll(bpy.context)
    bpy.data.objects.remove(plain)


@pytest.mark.parametrize("idname", ["triposr.generate", "triposr.remesh"])
def test_adjust_last_operation_offers_only_what_re_meshes_without_running_the_model(extension, idname):
    cls = bpy.types.TRIPOSR_OT_generate if idname == "triposr.generate" else bpy.types.TRIPOSR_OT_remesh

    calls = draw(OperatorStandIn(idname), cls.draw)

    drawn = {detail for function, detail in calls if function == "prop"}
    assert {"resolution", "threshold", "remove_floaters", "floater_fraction", "target_faces"} <= drawn
    assert not drawn & {"remove_background", "foreground_ratio", "filepath", "image_name"}


def test_the_remove_dialog_offers_to_delete_the_downloaded_models(extension, monkeypatch, tmp_path):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.delenv("TRIPOSR_MODEL", raising=False)
    monkeypatch.setenv(dependencies.ENV_MODELS_DIR, str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--stabilityai--TripoSR").mkdir(parents=True)
    (tmp_path / "models" / "rembg").mkdir(parents=True)

    calls = draw(
        OperatorStandIn("triposr.remove_dependencies"), install_ops.TRIPOSR_OT_remove_dependencies.draw
    )

    assert ("prop", "delete_models") in calls
    assert ("label", str(tmp_path / "hub" / "models--stabilityai--TripoSR")) in calls


def test_the_preferences_with_the_server_backend_ask_for_its_address_and_token_and_install_nothing(
    ui_state, addon_preferences, monkeypatch
):
    monkeypatch.delenv("TRIPOSR_SERVER", raising=False)
    ui_state("missing")
    addon_preferences.backend = "SERVER"

    calls = draw(addon_preferences, preferences.TripoSRPreferences.draw, area_type="PREFERENCES")

    assert ("prop", "server_url") in calls and ("prop", "server_token") in calls
    assert ("operator", "triposr.install_dependencies") not in calls
    addon_preferences.backend = "LOCAL"
