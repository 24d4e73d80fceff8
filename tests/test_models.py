"""Loading models: every failure (a wrong hub id, no network, a broken folder, weights of the wrong shape,
a device this machine lacks) is one sentence that says what happened and how to switch to the bundled
model. No network is used: tiny random UNets stand in for real models, the hub is monkeypatched, and a
subprocess loads a stand-in from a hub cache through diffusers' real hub code with HF_HUB_OFFLINE=1.
"""

import importlib
import json
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from src import files, models
from src import functions as F
from src.course import CourseError, load_model

SWITCH = "set `model: models/mnist-ddpm`"  # every failure offers the course's own model
HUB_ID = "google/ddpm-celebahq-256"


def save_tiny_model(folder, sample_size=8, channels=1, block=(8, 16), num_class_embeds=None, layout="flat",
                    num_train_timesteps=1000):
    """A random UNet2DModel + DDPM scheduler saved in diffusers' flat layout (unet + scheduler files side
    by side, as google/ddpm-* and models/mnist-ddpm) or pipeline layout (unet/, scheduler/)."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                       block_out_channels=block, norm_num_groups=4, add_attention=False,
                       down_block_types=("DownBlock2D",) * len(block), up_block_types=("UpBlock2D",) * len(block),
                       num_class_embeds=num_class_embeds)
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, clip_sample=False)
    unet.save_pretrained(folder if layout == "flat" else folder / "unet")
    scheduler.save_pretrained(folder if layout == "flat" else folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", num_class_embeds=3)


@pytest.fixture
def model_dir(tmp_path, tiny_dir):
    """A fresh copy of the tiny model to break."""
    return shutil.copytree(tiny_dir, tmp_path / "model")


def edit_json(path, **items):
    data = json.loads(path.read_text())
    data.update(items)
    path.write_text(json.dumps(data))


def one_sentence(error_info, *parts):
    message = str(error_info.value)
    for part in parts:
        assert part in message, f"{part!r} missing from: {message}"
    assert "\n" not in message and message.endswith("."), message
    return message


# --- local folders ---------------------------------------------------------------------------------

def test_a_tiny_local_model_loads_in_both_layouts(tmp_path, tiny_dir):
    model = load_model(str(tiny_dir), device="cpu")
    assert (model.size, model.channels, model.null_label, model.num_train_timesteps) == (8, 1, 2, 1000)
    assert type(model.scheduler).__name__ == "DDIMScheduler" and not model.unet.training
    pipeline = save_tiny_model(tmp_path / "pipeline", channels=3, layout="pipeline", num_train_timesteps=500)
    model = load_model(str(pipeline), device="cpu")
    assert (model.channels, model.class_conditional, model.num_train_timesteps) == (3, False, 500)


def test_folder_without_config_json(model_dir):
    (model_dir / "config.json").unlink()
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, str(model_dir), "has no config.json", "not a diffusers model folder", SWITCH)


def test_folder_without_weights(model_dir):
    (model_dir / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, "has a config.json but no weights", "diffusion_pytorch_model.safetensors", SWITCH)


def test_folder_without_scheduler_config(model_dir):
    (model_dir / "scheduler_config.json").unlink()
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, "has no scheduler_config.json", "noise schedule is unknown", SWITCH)


def test_weights_of_the_wrong_shape(tmp_path, model_dir):
    """Two tiny UNets with different channels: the weights of one under the other's config.json."""
    other = save_tiny_model(tmp_path / "other", block=(16, 16), num_class_embeds=3)
    shutil.copy(other / "diffusion_pytorch_model.safetensors", model_dir / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, "do not fit the architecture in its config.json", "size mismatch", "different models", SWITCH)


def test_weights_missing_a_part_are_not_silently_random(tmp_path, model_dir):
    """diffusers only logs missing weights and leaves them random: a class-conditional config with an
    unconditional model's weights must fail, not draw noise-like digits."""
    other = save_tiny_model(tmp_path / "other", num_class_embeds=None)
    shutil.copy(other / "diffusion_pytorch_model.safetensors", model_dir / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, "lack 1 of the parameters", "class_embedding.weight", "different models", SWITCH)


def test_damaged_config_json(model_dir):
    (model_dir / "config.json").write_text('{"sample_size": 8,')
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, "config.json is not valid JSON", "damaged", SWITCH)


@pytest.mark.parametrize("file, items, parts", [
    ("scheduler_config.json", {"beta_schedule": "cosine"},
     ["beta_schedule 'cosine'", "knows only linear, scaled_linear, squaredcos_cap_v2, sigmoid"]),
    ("scheduler_config.json", {"prediction_type": "v_prediction"}, ["predicts 'v_prediction'", "needs 'epsilon'"]),
    ("scheduler_config.json", {"num_train_timesteps": 0}, ["num_train_timesteps 0", "at least 2"]),
    ("config.json", {"out_channels": 2}, ["1 input and 2 output channels", "1 (greyscale) or 3 (RGB)"]),
    ("config.json", {"_class_name": "UNet2DConditionModel"}, ["is a UNet2DConditionModel", "UNet2DModel"]),
    ("config.json", {"sample_size": [8, 16]}, ["sample_size [8, 16]", "square images"]),
], ids=["unknown-schedule", "v-prediction", "zero-steps", "learned-variance", "text-to-image-unet", "not-square"])
def test_model_the_course_cannot_sample_from(model_dir, file, items, parts):
    edit_json(model_dir / file, **items)
    with pytest.raises(CourseError) as info:
        load_model(str(model_dir))
    one_sentence(info, *parts, SWITCH)


def test_the_bundled_model_missing_says_how_to_restore_it(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "PROJECT_ROOT", tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(CourseError) as info:
        load_model("models/mnist-ddpm")
    message = one_sentence(info, "the course's own model", "missing from this copy of the course",
                           "git checkout models/mnist-ddpm", "python -m src.train ddpm")
    assert SWITCH not in message


def test_patch_and_timesteps_are_checked_against_the_model_before_its_weights_load(model_dir, monkeypatch):
    from diffusers import UNet2DModel

    cfg = {"model": str(model_dir), "device": "cpu", "num_inference_steps": 10, "sdedit_start_indices": [1],
           "anagram_classes": [6, 9], "forward_timesteps": [0, 999], "patch_size": 4, "patch_x": 6, "patch_y": 0}
    monkeypatch.setattr(UNet2DModel, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(CourseError) as info:
        load_model(cfg)
    one_sentence(info, "patch_size 4 at patch_x 6, patch_y 0", "8x8 images", "patch_x, patch_y <= 4")


# --- devices ---------------------------------------------------------------------------------------

def test_device_cuda_without_cuda_is_a_clear_error_not_a_silent_fallback(tiny_dir, monkeypatch):
    """Decision: an error. A 256-pixel model that silently runs on the CPU takes an hour, not a minute."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CourseError) as info:
        load_model(str(tiny_dir), device="cuda")
    one_sentence(info, "`device` in config.yaml is 'cuda'", "no CUDA GPU", "`device: auto` (or cpu)", "GPU runtime")
    assert models.pick_device("auto").type in ("cpu", "mps")


# --- the hub, without a network ----------------------------------------------------------------------

def http_library():
    """The HTTP library huggingface_hub is built on (httpx, requests or a fork): its errors' base class."""
    from huggingface_hub.errors import HfHubHTTPError

    return importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])


def http_error(cls, status):
    """A real huggingface_hub error, with the response object its constructor wants."""
    http = http_library()
    return cls(f"{status} Client Error", response=http.Response(status, request=http.Request("GET", "https://hf.co")))


@pytest.fixture
def online(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE off (conftest sets it), an empty hub cache, and no real request possible."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))

    def set_answer(error):
        def model_info(repo_id, timeout=None, **kwargs):
            assert timeout is not None and timeout <= 10, "the probe must not hang on a silent network"
            raise error
        monkeypatch.setattr("huggingface_hub.model_info", model_info)
    return set_answer


def test_wrong_hub_id(online):
    from huggingface_hub.errors import RepositoryNotFoundError

    online(http_error(RepositoryNotFoundError, 404))
    with pytest.raises(CourseError) as info:
        load_model("google/ddpm-celeba-265")
    one_sentence(info, "no model called 'google/ddpm-celeba-265' on the Hugging Face hub", "check the spelling", SWITCH)


def test_gated_hub_model(online):
    from huggingface_hub.errors import GatedRepoError

    online(http_error(GatedRepoError, 403))
    with pytest.raises(CourseError) as info:
        load_model("someone/gated-model")
    one_sentence(info, "'someone/gated-model' is gated", "hf auth login", SWITCH)


def test_no_network(online):
    online(http_library().ConnectError("[Errno 101] Network is unreachable"))
    with pytest.raises(CourseError) as info:
        load_model(HUB_ID)
    one_sentence(info, f"Cannot reach the Hugging Face hub to fetch '{HUB_ID}'", "ConnectError", "offline",
                 SWITCH, f"hf download {HUB_ID} --local-dir models/ddpm-celebahq-256")


def test_hf_hub_offline_and_not_cached(online, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    online(AssertionError("offline: the hub must not be asked"))
    with pytest.raises(CourseError) as info:
        load_model(HUB_ID)
    one_sentence(info, f"HF_HUB_OFFLINE is set and '{HUB_ID}' is not in the local hub cache", SWITCH)


def test_not_a_hub_id_and_not_a_folder():
    with pytest.raises(CourseError) as info:
        load_model("google/ddpm celebahq")
    one_sentence(info, "'google/ddpm celebahq'", "neither an existing folder", "hub id of the form owner/name", SWITCH)


HUB_SCRIPT = textwrap.dedent('''
    import sys, time, warnings
    sys.path.insert(0, sys.argv[1])
    import torch
    from src.course import CourseError, load_model
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE, "HF_HUB_OFFLINE=1 is read at import"
    # 1. offline, in the cache: loads through diffusers' own hub code (the id is not a folder)
    model = load_model("google/ddpm-celebahq-256", device="cpu")
    x = model.noise(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.unet(x, torch.tensor([10])).sample
    print("LOADED", model.size, model.channels, model.num_train_timesteps, tuple(out.shape))
    # 2. offline, not in the cache
    try:
        load_model("google/ddpm-cat-256")
    except CourseError as e:
        print("OFFLINE-MISSING", e)
    # 3. online, but the hub (HF_ENDPOINT) is a closed port
    constants.HF_HUB_OFFLINE = False
    t0 = time.perf_counter()
    try:
        load_model("google/ddpm-cat-256")
    except CourseError as e:
        print("UNREACHABLE", round(time.perf_counter() - t0, 1), e)
    # 4. ... and the cached model is used, with a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model("google/ddpm-celebahq-256", device="cpu")
    print("FALLBACK", model.size, [str(w.message) for w in caught if "local cache" in str(w.message)])
''')


def test_hub_id_path_offline_and_unreachable_in_a_fresh_process(tmp_path):
    """HF_HOME, HF_HUB_OFFLINE and HF_ENDPOINT are read when huggingface_hub is imported: a subprocess with a
    stand-in for google/ddpm-celebahq-256 saved in the hub cache layout, offline, then with a dead endpoint."""
    snapshot = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--google--ddpm-celebahq-256"
    save_tiny_model(repo / "snapshots" / snapshot, channels=3)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**__import__("os").environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": f"http://127.0.0.1:{port}", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(files.PROJECT_ROOT)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "local_dir_use_symlinks" not in result.stderr, "no warning a student cannot act on"
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in result.stdout.splitlines() if " " in line}
    assert lines["LOADED"] == "8 3 1000 (1, 3, 8, 8)"
    assert "HF_HUB_OFFLINE is set and 'google/ddpm-cat-256' is not in the local hub cache" in lines["OFFLINE-MISSING"]
    assert SWITCH in lines["OFFLINE-MISSING"]
    seconds, message = lines["UNREACHABLE"].split(" ", 1)
    assert float(seconds) < 20, "an unreachable hub must fail fast"
    assert "Cannot reach the Hugging Face hub to fetch 'google/ddpm-cat-256'" in message and SWITCH in message
    assert lines["FALLBACK"].startswith("8 [") and "using the copy of 'google/ddpm-celebahq-256'" in lines["FALLBACK"]


def test_a_notebook_on_another_model_says_whose_digits_its_text_speaks_of(tmp_path, capsys):
    """course.note_on_text: nothing on the bundled model (by its name or its folder's path), one sentence otherwise."""
    from types import SimpleNamespace

    from src.config import BUNDLED_MODEL
    from src.course import is_bundled, note_on_text
    from src.files import repo_path

    assert is_bundled(BUNDLED_MODEL) and is_bundled(str(repo_path(BUNDLED_MODEL)))
    assert not is_bundled("google/ddpm-celebahq-256") and not is_bundled(str(tmp_path))
    note_on_text(SimpleNamespace(name=BUNDLED_MODEL))
    assert capsys.readouterr().out == ""
    note_on_text(SimpleNamespace(name="google/ddpm-celebahq-256"))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "google/ddpm-celebahq-256's" in out and BUNDLED_MODEL in out, out
