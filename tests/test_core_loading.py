"""Loading models: the official layout loads exactly; anything else is refused, naming the problem."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from fixture_model import FIXTURE, OPTIONS, core_mesh
from PIL import Image

from triposr_blender.core import ModelLoadError, TripoSR
from triposr_blender.core.config import load_config
from triposr_blender.core.model import build_network
from triposr_blender.core.weights import (
    check_state_dict,
    download_progress_bar,
    expected_layout,
    load_weights,
    read_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
OFFICIAL_CONFIG = FIXTURES / "official-config.yaml"
OFFICIAL_LAYOUT = json.loads((FIXTURES / "official-layout.json").read_text())


@pytest.fixture(scope="module")
def official_network():
    """The full stabilityai/TripoSR architecture on the meta device: shapes only, nothing allocated."""
    return build_network(load_config(OFFICIAL_CONFIG))


@pytest.fixture
def official_state():
    return {name: torch.empty(shape, device="meta") for name, shape in OFFICIAL_LAYOUT["keys"].items()}


def copy_tiny_model(folder: Path) -> Path:
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.npz", "*.png", "*.md", "meta.json"))
    return folder


# --- The official checkpoint layout ------------------------------------------------------------------


def test_the_official_config_builds_exactly_the_official_checkpoint_layout(official_network):
    layout = {name: list(shape) for name, shape in expected_layout(official_network).items()}
    assert list(layout.items()) == list(OFFICIAL_LAYOUT["keys"].items())
    assert (
        sum(tensor.numel() for tensor in official_network.state_dict().values())
        == (OFFICIAL_LAYOUT["num_parameters"])
    )


def test_the_official_layout_loads_strictly(official_network, official_state):
    load_weights(official_network, official_state)
    assert set(dict(official_network.named_parameters())) == set(official_state)


def test_the_unused_vit_pooler_is_part_of_the_layout(official_network):
    assert "image_tokenizer.model.pooler.dense.weight" in expected_layout(official_network)


def test_a_missing_tensor_is_named(official_network, official_state):
    del official_state["backbone.transformer_blocks.3.attn2.to_k.weight"]
    with pytest.raises(ModelLoadError, match=r"missing: backbone\.transformer_blocks\.3\.attn2\.to_k"):
        check_state_dict(expected_layout(official_network), official_state)


def test_an_unexpected_tensor_is_named(official_network, official_state):
    official_state["image_tokenizer.model.embeddings.mask_token"] = torch.empty(1, 1, 768, device="meta")
    with pytest.raises(ModelLoadError, match=r"unexpected: image_tokenizer\.model\.embeddings\.mask_token"):
        check_state_dict(expected_layout(official_network), official_state)


def test_a_misshaped_tensor_is_named_with_both_shapes(official_network, official_state):
    official_state["decoder.layers.0.weight"] = torch.empty(64, 121, device="meta")
    with pytest.raises(
        ModelLoadError, match=r"decoder\.layers\.0\.weight \[64, 121\] \(expected \[64, 120\]"
    ):
        check_state_dict(expected_layout(official_network), official_state)


def test_many_problems_are_summarised_not_listed_in_full(official_network):
    with pytest.raises(ModelLoadError, match=r"missing: .* and 544 more"):
        check_state_dict(expected_layout(official_network), {})


def test_integer_tensors_are_refused(official_network, official_state):
    official_state["tokenizer.embeddings"] = torch.zeros(3, 1024, 32, 32, dtype=torch.int64)
    with pytest.raises(ModelLoadError, match=r"not floating point: tokenizer\.embeddings"):
        check_state_dict(expected_layout(official_network), official_state)


def test_a_checkpoint_that_does_not_fit_the_config_is_refused_before_anything_loads(tmp_path):
    folder = copy_tiny_model(tmp_path / "mixed")
    shutil.copy(OFFICIAL_CONFIG, folder / "config.yaml")
    with pytest.raises(ModelLoadError, match=r"model\.ckpt does not match config\.yaml \(missing: "):
        TripoSR.from_pretrained(folder, device="cpu")


# --- Untrusted and broken files ----------------------------------------------------------------------


class CodeRunningPayload:
    """Unpickling this would create a directory: proof of code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"decoder.layers.0.weight": torch.zeros(2), "payload": CodeRunningPayload(marker)}, checkpoint)
    with pytest.raises(ModelLoadError, match="could run code"):
        read_checkpoint(checkpoint)
    assert not marker.exists()


def test_a_truncated_checkpoint_is_refused(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes((FIXTURE / "model.ckpt").read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(checkpoint)


def test_a_checkpoint_that_is_not_a_mapping_of_tensors_is_refused(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    torch.save([torch.zeros(2)], checkpoint)
    with pytest.raises(ModelLoadError, match="plain mapping of names to tensors"):
        read_checkpoint(checkpoint)


@pytest.mark.parametrize("missing", ["model.ckpt", "config.yaml"])
def test_a_model_folder_missing_a_file_names_it(tmp_path, missing):
    folder = copy_tiny_model(tmp_path / "model")
    (folder / missing).unlink()
    with pytest.raises(ModelLoadError, match=rf"has no {missing}"):
        TripoSR.from_pretrained(folder, device="cpu")


def test_a_source_that_is_neither_a_folder_nor_a_repo_id_is_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a model folder nor a Hugging Face repository id"):
        TripoSR.from_pretrained(tmp_path / "no" / "such" / "folder", device="cpu")


def test_the_tiny_model_loads_from_a_folder_and_reports_progress():
    reports = []
    model = TripoSR.from_pretrained(FIXTURE, device="cpu", progress=lambda _stage, done: reports.append(done))
    assert reports == [0.0, 1.0]
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.load_seconds > 0


# --- Hugging Face hub, without network ---------------------------------------------------------------


def run_offline(code: str, hf_home: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the given HF_HOME and every hub request disabled."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=300
    )


def test_without_network_the_error_says_so_and_names_the_local_folder_alternative(tmp_path):
    result = run_offline(
        """
        from triposr_blender.core import ModelLoadError, TripoSR
        try:
            TripoSR.from_pretrained("stabilityai/TripoSR", device="cpu")
        except ModelLoadError as error:
            print(error)
        """,
        tmp_path / "hf-home",
    )
    assert result.returncode == 0, result.stderr
    assert "no network connection" in result.stdout
    assert "TRIPOSR_MODEL=<folder>" in result.stdout


def test_a_model_in_the_hub_cache_loads_offline(tmp_path):
    hf_home = tmp_path / "hf-home"
    repo_cache = hf_home / "hub" / "models--someone--tiny-triposr"
    revision = "0123456789abcdef0123456789abcdef01234567"
    copy_tiny_model(repo_cache / "snapshots" / revision)
    (repo_cache / "refs").mkdir()
    (repo_cache / "refs" / "main").write_text(revision)
    result = run_offline(
        """
        from triposr_blender.core import TripoSR
        model = TripoSR.from_pretrained("someone/tiny-triposr", device="cpu")
        print(model.config.cond_image_size)
        """,
        hf_home,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "64"


def test_download_progress_is_reported_as_a_fraction_without_printing(capsys):
    reports = []
    bar = download_progress_bar(lambda stage, fraction: reports.append((stage, fraction)))
    resumed = bar(total=200, initial=50, unit="B", desc="model.ckpt")
    resumed.update(50)
    resumed.update(100)
    resumed.close()
    assert reports == [("Downloading model", 0.5), ("Downloading model", 1.0)]
    assert capsys.readouterr() == ("", "")


# --- Untrusted model folders: what they hold is checked before it can hang or exhaust anything -----------


def test_a_half_precision_checkpoint_loads_as_float32_and_gives_the_same_mesh(tmp_path):
    folder = copy_tiny_model(tmp_path / "half")
    state = torch.load(folder / "model.ckpt", weights_only=True)
    torch.save({name: tensor.half() for name, tensor in state.items()}, folder / "model.ckpt")
    image = Image.open(FIXTURE / "input.png").convert("RGB")

    model = TripoSR.from_pretrained(folder, device="cpu")
    mesh = model.extract_mesh(
        model.encode(image), resolution=OPTIONS["resolution"], threshold=OPTIONS["threshold"]
    )

    assert all(parameter.dtype == torch.float32 for parameter in model.network.parameters())
    exact = core_mesh()
    assert abs(len(mesh.faces) - len(exact.faces)) < 0.02 * len(
        exact.faces
    ), "half-rounded weights, same shape"


def test_nan_or_infinite_weights_are_refused_at_load_naming_the_tensor(tmp_path):
    folder = copy_tiny_model(tmp_path / "nan")
    state = torch.load(folder / "model.ckpt", weights_only=True)
    state["decoder.layers.0.weight"][0, 0] = float("nan")
    state["post_processor.upsample.bias"][0] = float("inf")
    torch.save(state, folder / "model.ckpt")

    with pytest.raises(ModelLoadError, match="NaN or infinite values .*decoder.layers.0.weight"):
        TripoSR.from_pretrained(folder, device="cpu")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
@pytest.mark.parametrize("file", ["config.yaml", "model.ckpt", "vit/config.json"])
def test_a_model_file_that_is_a_pipe_is_refused_instead_of_blocking(tmp_path, file):
    folder = copy_tiny_model(tmp_path / "pipe")
    (folder / file).unlink()
    os.mkfifo(folder / file)
    code = f"""
        from triposr_blender.core import ModelLoadError, TripoSR
        try:
            TripoSR.from_pretrained({str(folder)!r}, device="cpu")
        except ModelLoadError as error:
            print(error)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert "is not a regular file" in result.stdout, result.stderr


def test_a_repo_id_without_network_fails_within_seconds(tmp_path):
    """huggingface_hub retries a host that does not resolve for about half a minute."""
    code = """
        import time
        from triposr_blender.core.weights import locate_model
        started = time.monotonic()
        try:
            locate_model("someone/not-downloaded")
        except Exception as error:
            print(type(error).__name__, round(time.monotonic() - started, 1), error)
        """
    # .invalid never resolves (RFC 2606): the same as a machine without network, on any machine.
    env = {
        **os.environ,
        "HF_ENDPOINT": "https://hub.invalid",
        "HF_HUB_CACHE": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    for variable in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(variable, None)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )
    kind, seconds, message = result.stdout.split(" ", 2)
    assert kind == "ModelLoadError" and "no network connection" in message, result.stderr
    assert float(seconds) < 8.0
