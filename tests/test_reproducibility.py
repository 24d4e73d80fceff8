"""Same config and seed, same pictures, bit for bit on the CPU: the sampler (DDIM with eta = 0 needs no
seed at all, DDPM needs only its generator), the course API end to end, and one whole notebook run twice.
And a stopped loop (KeyboardInterrupt, the notebook's Stop button) leaves the model and config usable."""

import copy
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import torch

from src import figures, files
from src import functions as F
from src.course import load_config, load_model

REAL_CONFIG = (files.PROJECT_ROOT / "config.yaml").read_text()


def disturb_global_rng():
    """Whatever else a notebook did in between: the pictures must not depend on torch's global RNG."""
    torch.manual_seed(int(time.time_ns() % 1000))
    torch.rand(1000)


@pytest.fixture(scope="module")
def abar():
    return F.alphas_cumprod_from_betas(F.make_betas("linear", 1000))


@pytest.fixture(scope="module")
def x_T():
    return torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_ddim_with_eta_0_is_deterministic_without_any_seed(tiny_unet, abar, x_T):
    kwargs = dict(num_inference_steps=10, eta=0.0, class_labels=torch.tensor([0, 1, 0, 1]), guidance_scale=2.0,
                  progress=False)
    first = F.sample(tiny_unet, x_T, abar, **kwargs)
    disturb_global_rng()
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    second = F.sample(tiny_unet, x_T, abar, generator=g, **kwargs)
    assert torch.equal(first, second), "DDIM (eta = 0) must not draw any noise"
    assert torch.equal(g.get_state(), state), "eta = 0 leaves the generator untouched"
    assert torch.equal(x_T, torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))), "x_T not modified"


def test_ddpm_with_a_seeded_generator_is_reproducible(tiny_unet, x_T):
    """eta = 1 with every timestep (S = T) is DDPM's ancestral sampler; T = 50 keeps it quick."""
    abar50 = F.alphas_cumprod_from_betas(F.make_betas("linear", 50))

    def ddpm(seed):
        return F.sample(tiny_unet, x_T, abar50, num_inference_steps=50, eta=1.0,
                        generator=torch.Generator().manual_seed(seed), progress=False)

    first = ddpm(7)
    disturb_global_rng()
    assert torch.equal(first, ddpm(7))
    assert not torch.allclose(first, ddpm(8)), "another seed gives another picture (the noise is used)"


def test_the_same_config_gives_the_same_pictures_through_the_course_api(tmp_path):
    """load_config + load_model + model.noise + F.sample + saved PNG, twice from scratch: identical pixels."""
    import matplotlib.pyplot as plt
    from diffusers import DDPMScheduler, UNet2DModel
    from PIL import Image

    torch.manual_seed(0)
    folder = tmp_path / "model"
    UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                norm_num_groups=4, add_attention=False, down_block_types=("DownBlock2D",) * 2,
                up_block_types=("UpBlock2D",) * 2, num_class_embeds=11).save_pretrained(folder)
    DDPMScheduler(clip_sample=False).save_pretrained(folder)
    config = tmp_path / "config.yaml"
    config.write_text(REAL_CONFIG.replace("model: models/mnist-ddpm", f"model: {folder}")
                      .replace("patch_x: 10", "patch_x: 0").replace("patch_y: 10", "patch_y: 0")
                      .replace("eta: 0.0", "eta: 0.5"))  # eta > 0: the seeded noise matters too

    def run(out):
        disturb_global_rng()
        cfg = load_config(config)
        model = load_model(cfg)
        g = torch.Generator().manual_seed(cfg["seed"])
        x = F.sample(model.unet, model.noise(cfg["num_samples"], g), model.alphas_cumprod, cfg["num_inference_steps"],
                     eta=cfg["eta"], class_labels=cfg["class_label"], generator=g, progress=False)
        fig = figures.show_images(x)
        path = files.save_output(files.figure_bytes(fig), "samples.png", out)
        plt.close(fig)
        return x, np.asarray(Image.open(path))

    (x1, png1), (x2, png2) = run(tmp_path / "run1"), run(tmp_path / "run2")
    assert torch.equal(x1, x2) and np.array_equal(png1, png2)


def test_an_interrupted_loop_leaves_model_and_config_usable(tiny_unet, abar, x_T):
    """KeyboardInterrupt in the middle of sampling: no inference mode left on, the model unchanged, the
    inputs untouched, and the next run gives exactly the pictures an uninterrupted run gives."""
    cfg = {"seed": 0, "num_inference_steps": 10, "strengths": [0.5]}
    snapshot, x_copy = copy.deepcopy(cfg), x_T.clone()
    weights = {k: v.clone() for k, v in tiny_unet.state_dict().items()}
    reference = F.sample(tiny_unet, x_T, abar, cfg["num_inference_steps"], eta=0.5,
                         generator=torch.Generator().manual_seed(cfg["seed"]), progress=False)

    def stop_at_step_3(i, t_prev, x):
        if i == 3:
            raise KeyboardInterrupt
        return x

    def stop_inside_the_model_call(x, t, rows):
        raise KeyboardInterrupt

    for stop in ({"after_step": stop_at_step_3}, {"epsilon_fn": stop_inside_the_model_call}):
        with pytest.raises(KeyboardInterrupt):
            F.sample(tiny_unet, x_T, abar, cfg["num_inference_steps"], eta=0.5, return_trajectory=True,
                     generator=torch.Generator().manual_seed(cfg["seed"]), progress=True, **stop)
        assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
        assert not tiny_unet.training and cfg == snapshot and torch.equal(x_T, x_copy)
        assert all(torch.equal(v, weights[k]) for k, v in tiny_unet.state_dict().items())
        again = F.sample(tiny_unet, x_T, abar, cfg["num_inference_steps"], eta=0.5,
                         generator=torch.Generator().manual_seed(cfg["seed"]), progress=False)
        assert torch.equal(again, reference)


@pytest.mark.slow
def test_a_notebook_shows_course_errors_as_one_sentence_and_survives_the_stop_button(tmp_path):
    """One real kernel (nbclient, as nbmake runs notebooks):
    1. setup_notebook() shows a CourseError from a bad COURSE_CONFIG as its sentence, without a stack trace,
       and the cell still counts as failed (CellExecutionError: nbmake fails, "Run all" stops there);
    2. a real SIGINT (what Jupyter's Stop button sends) during a long sampling loop raises KeyboardInterrupt,
       and the next cell samples again with the same model and config and gets the same pictures."""
    import nbformat
    from src.kernel import notebook_client
    from nbclient.exceptions import CellExecutionError

    bad = tmp_path / "bad.yaml"
    bad.write_text(REAL_CONFIG.replace("seed: 0", "seed: -1"))
    setup = f"""
import copy, os, sys, torch
sys.path.insert(0, {str(files.PROJECT_ROOT)!r})
os.environ["COURSE_CONFIG"] = {str(bad)!r}
from diffusers import UNet2DModel
from src import functions as F
from src.course import load_config, setup_notebook
setup_notebook()
torch.manual_seed(0)
unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                   norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2).eval()
abar = F.alphas_cumprod_from_betas(F.make_betas("linear", 1000))
cfg = {{"seed": 0, "num_inference_steps": 20}}
snapshot = copy.deepcopy(cfg)
def run():
    g = torch.Generator().manual_seed(cfg["seed"])
    return F.sample(unet, torch.randn(2, 1, 8, 8, generator=g), abar, cfg["num_inference_steps"], eta=1.0, generator=g)
reference = run()
print("ready")"""
    looping = tmp_path / "looping"  # the loop cell creates it, so the stop comes while the loop runs
    cells = [setup, "cfg = load_config()", f"open({str(looping)!r}, 'w').close()\nfor _ in range(100000):\n    run()",
             "assert torch.equal(run(), reference) and cfg == snapshot\n"
             "assert not torch.is_inference_mode_enabled() and not unet.training\nprint('usable')",
             "load_config()"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = notebook_client(nb, tmp_path, timeout=300)
    sentence = "`seed` in bad.yaml is -1, but it must be an integer from 0 to 4294967295."

    def fails_with_the_sentence(index):
        with pytest.raises(CellExecutionError) as info:
            client.execute_cell(nb.cells[index], index)
        assert "CourseError" in str(info.value) and sentence in str(info.value)
        errors = [o for o in nb.cells[index].outputs if o.output_type == "error"]
        assert len(errors) == 1 and errors[0].ename == "CourseError", nb.cells[index].outputs
        shown = "\n".join(errors[0].traceback)
        assert sentence in shown and "Traceback" not in shown and "course.py" not in shown, shown

    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        assert any("ready" in o.get("text", "") for o in nb.cells[0].outputs)
        fails_with_the_sentence(1)

        def press_stop(pid=client.km.provisioner.process.pid):
            deadline = time.monotonic() + 120
            while not looping.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # a few sampling runs in
            os.kill(pid, signal.SIGINT)

        stopper = threading.Thread(target=press_stop)
        stopper.start()
        with pytest.raises(CellExecutionError) as info:
            client.execute_cell(nb.cells[2], 2)
        stopper.join()
        assert "KeyboardInterrupt" in str(info.value)
        client.execute_cell(nb.cells[3], 3)
        assert nb.cells[3].outputs[-1].text == "usable\n"

        fails_with_the_sentence(4)  # the handler is still installed after its first use and a stop


# --- one whole notebook, twice ---------------------------------------------------------------------------

# The cheapest notebook that still runs the model's sampler from seeded noise (about 13 s of CPU per run in
# smoke mode); COURSE_REPRO_NOTEBOOK=02_reverse_process (say) checks another one.
PREFERRED = ["01_forward_process", "03_similar_noise", "04_noise_levels", "02_reverse_process"]


def pick_notebook():
    found = {p.stem: p for p in sorted((files.PROJECT_ROOT / "notebooks").glob("*.ipynb"))}
    wanted = os.environ.get("COURSE_REPRO_NOTEBOOK")
    if wanted:
        return found.get(wanted) or pytest.fail(f"COURSE_REPRO_NOTEBOOK={wanted}: no notebooks/{wanted}.ipynb")
    for name in PREFERRED:
        if name in found:
            return found[name]
    return next(iter(found.values()), None)


def snapshot_model(dest):
    """A consistent copy of the bundled model (training may rewrite it while the tests run)."""
    source = files.PROJECT_ROOT / "models" / "mnist-ddpm"
    for _ in range(5):
        before = {p.name: p.stat().st_mtime_ns for p in source.iterdir()}
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("checkpoint.pt*", "*.csv"))
        if before == {p.name: p.stat().st_mtime_ns for p in source.iterdir()}:
            return dest
        time.sleep(2)
    pytest.skip("the bundled model kept changing while being copied (training in progress)")


def decoded(path):
    """The pixels of every frame of a saved PNG or GIF."""
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGBA")) for frame in ImageSequence.Iterator(image)]


@pytest.mark.slow
def test_a_whole_notebook_saves_the_same_pictures_twice(tmp_path, monkeypatch):
    """Run a notebook twice on fresh kernels (smoke mode, same config and seed): every figure and GIF it
    saves has the same pixels. The model is a snapshot, so a training run rewriting it cannot interfere."""
    import nbformat
    from src.kernel import notebook_client

    notebook = pick_notebook()
    if notebook is None:
        pytest.skip("no notebook in notebooks/ yet")
    model = snapshot_model(tmp_path / "mnist-ddpm")
    config = tmp_path / "config.yaml"
    config.write_text(REAL_CONFIG.replace("model: models/mnist-ddpm", f"model: {model}"))
    monkeypatch.setenv("COURSE_CONFIG", str(config))
    monkeypatch.setenv("COURSE_FAST", "1")
    saved = []
    for run in ("run1", "run2"):
        monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / run))
        nb = nbformat.read(notebook, as_version=4)
        notebook_client(nb, notebook.parent).execute()
        saved.append({p.name: decoded(p) for p in sorted((tmp_path / run).iterdir()) if not p.name.startswith(".")})
    first, second = saved
    assert first, f"{notebook.name} saved nothing to output/"
    assert sorted(first) == sorted(second), "the same files, under the same names"
    for name in first:
        frames1, frames2 = first[name], second[name]
        assert len(frames1) == len(frames2) and all(np.array_equal(a, b) for a, b in zip(frames1, frames2)), \
            f"{notebook.name}: {name} differs between two runs with the same config and seed"
