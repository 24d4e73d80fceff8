"""Bad configs: each is rejected by load_config with one sentence naming the key, the value and what is
allowed, before any model loads and without writing anything.

Every case runs in a throwaway copy of the project (tmp_path): a stand-in for models/mnist-ddpm (28x28,
1 channel, T = 1000, random weights), the course's config.yaml and one image; COURSE_CONFIG points at it.
"""

import re
import shutil

import pytest
import torch

from src import config, files, models
from src.course import CourseError, load_config

REAL_CONFIG = files.repo_path("config.yaml").read_text()


def save_tiny_model(folder, sample_size=28, channels=1, num_class_embeds=11, num_train_timesteps=1000):
    """A random UNet2DModel + DDPM scheduler in diffusers' flat layout (as models/mnist-ddpm is)."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=channels, layers_per_block=1,
                block_out_channels=(8, 16), norm_num_groups=4, add_attention=False,
                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                num_class_embeds=num_class_embeds).save_pretrained(folder)
    DDPMScheduler(num_train_timesteps=num_train_timesteps, clip_sample=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "mnist-ddpm")


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_model_dir):
    """A copy of the project's inputs under tmp_path, made the repository root (src.files.PROJECT_ROOT)."""
    root = tmp_path / "course"
    shutil.copytree(tiny_model_dir, root / "models" / "mnist-ddpm")
    (root / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 100, 50)).save(root / "images" / "astronaut.png")
    (root / "images" / "notes.txt").write_text("not a picture\n")
    (root / "config.yaml").write_text(REAL_CONFIG)
    monkeypatch.setattr(files, "PROJECT_ROOT", root)
    monkeypatch.setenv("COURSE_CONFIG", str(root / "config.yaml"))
    monkeypatch.delenv("COURSE_OUTPUT", raising=False)  # output_dir() is then root/output
    return root


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if anything tries to load weights or a scheduler, or to save an output."""
    from diffusers import DDIMScheduler, UNet2DModel

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded (or an output saved) while checking the config")

    for owner, attr in [(UNet2DModel, "from_pretrained"), (UNet2DModel, "load_config"),
                        (DDIMScheduler, "from_pretrained"), (DDIMScheduler, "load_config"),
                        (models, "load_model"), (files, "save_output"), (torch, "load")]:
        monkeypatch.setattr(owner, attr, forbidden)


def set_key(text, key, value):
    """config.yaml with `key: value` replaced (comments kept), or appended if the key is not there."""
    new, n = re.subn(rf"^{re.escape(key)}:[^#\n]*", f"{key}: {value}  ", text, flags=re.M)
    return new if n else text + f"\n{key}: {value}\n"


def model_with(project, **changes):
    """Edit the stand-in model's scheduler_config.json / config.json in place; returns nothing."""
    import json

    for file, items in changes.items():
        path = project / "models" / "mnist-ddpm" / f"{file}.json"
        data = json.loads(path.read_text())
        data.update(items)
        path.write_text(json.dumps(data))


# (id, edits as {key: YAML value} or a callable text -> text, substrings the sentence must contain)
CASES = [
    # unknown keys, with "did you mean" for near misses
    ("unknown-key-near-miss", {"sed": "1"}, ["Unknown key `sed`", "did you mean `seed`", "allowed keys"]),
    ("unknown-key-capitals", {"Seed": "1"}, ["Unknown key `Seed`", "did you mean `seed`"]),
    ("unknown-key-far", {"colour": "red"}, ["Unknown key `colour`", "allowed keys: model, device, seed"]),
    ("unknown-key-plural", {"strength": "[0.5]"}, ["Unknown key `strength`", "did you mean `strengths`"]),
    # wrong types
    ("seed-float", {"seed": "1.5"}, ["`seed`", "1.5", "an integer from 0 to 4294967295"]),
    ("seed-text", {"seed": "abc"}, ["`seed`", "'abc'", "an integer from 0"]),
    ("seed-bool", {"seed": "true"}, ["`seed`", "True", "an integer from 0"]),
    ("eta-quoted-number", {"eta": '"0.5"'}, ["`eta`", "'0.5'", "a number from 0", "without quotes"]),
    ("steps-text", {"num_inference_steps": "fifty"}, ["`num_inference_steps`", "'fifty'", "an integer from 1"]),
    ("model-number", {"model": "42"}, ["`model`", "42", "a local folder in diffusers layout"]),
    ("model-empty", {"model": '""'}, ["`model`", "''", "a local folder"]),
    ("strengths-scalar", {"strengths": "0.5"}, ["`strengths`", "0.5", "a list of 1 to 20 numbers in (0, 1]"]),
    ("forward-timesteps-scalar", {"forward_timesteps": "500"}, ["`forward_timesteps`", "500", "a list of 1 to 12"]),
    ("forward-timesteps-empty", {"forward_timesteps": "[]"}, ["`forward_timesteps`", "[]", "a list of 1 to 12"]),
    ("guidance-nan", {"guidance_scale": ".nan"}, ["`guidance_scale`", "nan", "a number from 0 to 20"]),
    # out of range
    ("seed-negative", {"seed": "-1"}, ["`seed`", "-1", "an integer from 0 to 4294967295"]),
    ("steps-zero", {"num_inference_steps": "0"}, ["`num_inference_steps`", "0", "from 1 to the model's training steps"]),
    ("steps-negative", {"num_inference_steps": "-5"}, ["`num_inference_steps`", "-5", "an integer from 1"]),
    ("steps-past-T", {"num_inference_steps": "1001"}, ["`num_inference_steps`", "1001", "(1000)"]),
    ("eta-above-1", {"eta": "1.5"}, ["`eta`", "1.5", "a number from 0 (DDIM) to 1"]),
    ("eta-negative-exponent", {"eta": "-1e-3"}, ["`eta`", "-0.001", "a number from 0 (DDIM) to 1"]),
    ("guidance-too-big", {"guidance_scale": "25"}, ["`guidance_scale`", "25", "a number from 0 to 20"]),
    ("num-samples-zero", {"num_samples": "0"}, ["`num_samples`", "0", "an integer from 1 to 64"]),
    ("num-samples-too-many", {"num_samples": "65"}, ["`num_samples`", "65", "an integer from 1 to 64"]),
    ("class-label-10", {"class_label": "10"}, ["`class_label`", "10", "a digit from 0 to 9"]),
    ("digit-index-1000", {"digit_index": "1000"}, ["`digit_index`", "1000", "0 to 999"]),
    ("mix-factor-2", {"mix_factor": "2"}, ["`mix_factor`", "2", "a number from 0 (same noise) to 1"]),
    ("grid-levels-1", {"grid_levels": "1"}, ["`grid_levels`", "1", "an integer from 2 to 50"]),
    ("guidance-scales-negative", {"guidance_scales": "[1.0, -1]"}, ["`guidance_scales`", "[1.0, -1]", "(-1 is not)"]),
    ("hybrid-classes-10", {"hybrid_classes": "[1, 10]"}, ["`hybrid_classes`", "[1, 10]", "two digits from 0 to 9"]),
    ("hybrid-sigma-zero", {"hybrid_sigma": "0"}, ["`hybrid_sigma`", "0", "a number in (0, 10]"]),
    ("train-steps-zero", {"train_steps": "0"}, ["`train_steps`", "0", "an integer from 1 to 100000"]),
    ("anagram-one-digit", {"anagram_classes": "[6]"}, ["`anagram_classes`", "[6]", "two digits from 0 to 9"]),
    ("anagram-same-digits", {"anagram_classes": "[6, 6]"}, ["`anagram_classes`", "[6, 6]", "two different digits"]),
    ("patch-size-zero", {"patch_size": "0"}, ["`patch_size`", "0", "an integer from 1 to the image size"]),
    # strengths outside (0, 1]
    ("strength-zero", {"strengths": "[0.0, 0.5]"}, ["`strengths`", "[0.0, 0.5]", "numbers in (0, 1]", "(0.0 is not)"]),
    ("strength-above-1", {"strengths": "[0.5, 1.2]"}, ["`strengths`", "[0.5, 1.2]", "(0, 1]", "(1.2 is not)"]),
    ("strength-negative", {"strengths": "[-0.1]"}, ["`strengths`", "[-0.1]", "(0, 1]"]),
    # a forward timestep >= the model's training steps (1000 here; 500 for a model trained with T = 500 below)
    ("forward-timestep-T", {"forward_timesteps": "[0, 500, 1000]"},
     ["`forward_timesteps`", "[0, 500, 1000]", "(1000 is not)", "training steps - 1"]),
    # SDEdit starts are indices into the S sampling steps
    ("sdedit-start-past-S", {"num_inference_steps": "20", "sdedit_start_indices": "[5, 25]"},
     ["`sdedit_start_indices`", "[25]", "below num_inference_steps (20)"]),
    # a patch partly or wholly outside the model's 28x28 images (read from the model folder's config.json)
    ("patch-partly-outside", {"patch_x": "25"}, ["patch_size 8 at patch_x 25, patch_y 10", "28x28", "<= 20"]),
    ("patch-wholly-outside", {"patch_x": "100", "patch_y": "200"}, ["patch_x 100, patch_y 200", "28x28"]),
    ("patch-too-big", {"patch_size": "40", "patch_x": "0", "patch_y": "0"}, ["patch_size 40", "patch_size <= 28"]),
    # devices
    ("device-unknown", {"device": "gpu"}, ["`device`", "'gpu'", "one of auto, cpu, cuda, mps", "did you mean 'cuda'"]),
    ("device-numbered", {"device": "cuda:1"}, ["`device`", "'cuda:1'", "one of auto, cpu, cuda, mps", "did you mean 'cuda'"]),
    ("device-capitals", {"device": "CUDA"}, ["`device`", "'CUDA'", "one of auto, cpu, cuda, mps", "did you mean 'cuda'"]),
    ("device-cuda-no-gpu", {"device": "cuda"}, ["`device`", "'cuda'", "no CUDA GPU", "`device: auto` (or cpu)"]),
    ("device-mps-no-apple-gpu", {"device": "mps"}, ["`device`", "'mps'", "no Apple GPU", "`device: auto` (or cpu)"]),
    # model paths that do not exist
    ("model-path-typo", {"model": "models/mnist-dpm"},
     ["`model`", "'models/mnist-dpm'", "does not exist", "does not exist; did you mean models/mnist-ddpm?", "set `model: models/mnist-ddpm`"]),
    ("model-absolute-missing", {"model": "/nonexistent/folder/model"},
     ["`model`", "'/nonexistent/folder/model'", "neither an existing folder", "hub id of the form owner/name"]),
    ("model-not-a-hub-id", {"model": "ddpm-celebahq-256"},
     ["`model`", "'ddpm-celebahq-256'", "nor a hub id of the form owner/name", "models/mnist-ddpm"]),
    ("model-folder-empty", lambda root, text: (root / "models" / "empty").mkdir() or set_key(text, "model", "models/empty"),
     ["has no config.json", "models/empty", "set `model: models/mnist-ddpm`"]),
    # the model's own files, read before anything loads
    ("model-unknown-schedule", lambda root, text: model_with(root, scheduler_config={"beta_schedule": "cosine"}) or text,
     ["beta_schedule 'cosine'", "linear, scaled_linear, squaredcos_cap_v2, sigmoid"]),
    ("model-trained-T-500", lambda root, text: model_with(root, scheduler_config={"num_train_timesteps": 500}) or text,
     ["`forward_timesteps`", "[500, 750, 999]", "below the model's 500 training steps (0 to 499)"]),
    ("model-v-prediction", lambda root, text: model_with(root, scheduler_config={"prediction_type": "v_prediction"}) or text,
     ["'v_prediction'", "prediction_type", "'epsilon'"]),
    # images
    ("image-missing", {"image": "images/astronot.png"}, ["`image`", "'images/astronot.png'", "there is no file"]),
    ("image-not-an-image", {"image": "images/notes.txt"}, ["`image`", "'images/notes.txt'", "not an image Pillow can read",
                                                           "PNG, JPEG"]),
    # files that are not a config
    ("empty-file", lambda root, text: "", ["config.yaml is empty", "`model:`"]),
    ("only-comments", lambda root, text: "# nothing here\n", ["config.yaml is empty"]),
    ("malformed-yaml", lambda root, text: "model: models/mnist-ddpm\n  seed: 0\neta 0.5\n",
     ["config.yaml is not valid YAML at line 2", "indentation", "`key: value`"]),
    ("tab-indentation", lambda root, text: "model: models/mnist-ddpm\n\tseed: 0\n", ["not valid YAML", "spaces, not tabs"]),
    ("unclosed-list", lambda root, text: set_key(text, "strengths", "[0.1, 0.2"), ["not valid YAML at line"]),
    ("a-list-not-a-mapping", lambda root, text: "- model\n- seed\n", ["must be a list of `key: value` lines, not a list"]),
    ("duplicate-key", lambda root, text: text + "\nseed: 42\n", ["`seed` appears twice", "lines 11 and", "second silently wins"]),
]


@pytest.mark.parametrize("case_id, edit, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_one_clear_sentence_before_anything_loads(case_id, edit, expected, project, nothing_loads,
                                                                monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    if hasattr(torch.backends, "mps"):
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    text = REAL_CONFIG
    if callable(edit):
        text = edit(project, text)
    else:
        for key, value in edit.items():
            text = set_key(text, key, value)
    (project / "config.yaml").write_text(text)

    with pytest.raises(CourseError) as info:
        load_config()
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"
    assert "\n" not in message and message.endswith((".", "?")), message
    chained = info.value.__cause__ or (None if info.value.__suppress_context__ else info.value.__context__)
    assert chained is None, "shown without a chained traceback"
    assert not (project / "output").exists(), "a rejected config must write nothing"


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


def test_the_course_config_itself_is_valid_in_both_modes(project, nothing_loads, monkeypatch):
    """The shipped config.yaml passes, and COURSE_FAST=1 shrinks it consistently (SDEdit starts < the fast S)."""
    monkeypatch.setenv("COURSE_FAST", "0")
    full = load_config()
    assert full["fast"] is False and full["num_inference_steps"] == 50
    monkeypatch.setenv("COURSE_FAST", "1")
    fast = load_config()
    assert fast["fast"] is True and fast["num_inference_steps"] == config.FAST["num_inference_steps"]
    assert all(0 <= i < fast["num_inference_steps"] for i in fast["sdedit_start_indices"])
    assert sorted(fast["sdedit_start_indices"]) == fast["sdedit_start_indices"], "same order of noise levels"
    assert not (project / "output").exists()


def test_changing_the_returned_config_does_not_change_the_next_one(project, nothing_loads):
    (project / "config.yaml").write_text("model: models/mnist-ddpm\n")  # every other key takes its default
    cfg = load_config()
    cfg["strengths"].append(0.99)
    cfg["forward_timesteps"][0] = 5
    again = load_config()
    assert 0.99 not in again["strengths"] and again["forward_timesteps"][0] == 0


def test_yaml_traps_are_read_as_students_mean_them(project, nothing_loads):
    """1e-3 is a number (PyYAML alone reads it as text) and a Windows byte-order mark is ignored."""
    text = set_key(REAL_CONFIG, "eta", "1e-3")
    (project / "config.yaml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config()["eta"] == pytest.approx(0.001)


def test_non_utf8_file_is_one_sentence(project, nothing_loads):
    (project / "config.yaml").write_bytes(REAL_CONFIG.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(CourseError, match=r"config.yaml is not UTF-8 text .*save it as UTF-8"):
        load_config()


def test_missing_config_file_names_the_path_and_course_config(project, nothing_loads, monkeypatch):
    monkeypatch.setenv("COURSE_CONFIG", str(project / "my-config.yaml"))
    with pytest.raises(CourseError, match=r"No config file at .*my-config\.yaml.*COURSE_CONFIG"):
        load_config()


def test_missing_bundled_model_says_how_to_restore_it(project, nothing_loads):
    shutil.rmtree(project / "models" / "mnist-ddpm")
    with pytest.raises(CourseError) as info:
        load_config()
    message = str(info.value)
    assert "the course's own model" in message and "missing from this copy of the course" in message
    assert "git checkout models/mnist-ddpm" in message and "python -m src.train ddpm" in message
    assert "set `model: models/mnist-ddpm`" not in message, "switching to the missing model is no advice"


def test_damaged_bundled_model_says_how_to_restore_it(project, nothing_loads):
    (project / "models" / "mnist-ddpm" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CourseError, match=r"no weights .*git checkout models/mnist-ddpm"):
        load_config()


def test_overrides_are_checked_like_the_file(project, nothing_loads):
    with pytest.raises(CourseError, match=r"`num_samples` in config.yaml is 0, but it must be an integer from 1 to 64"):
        load_config(num_samples=0)
    assert load_config(num_samples=2)["num_samples"] == 2


# How a CourseError looks in a notebook (one sentence, and the cell still fails for nbclient/nbmake) is tested
# in test_reproducibility.py, in the same kernel as the Stop-button test, to start one kernel instead of two.
