"""The benchmark's code paths in --quick mode: the table comes out, and the images agree.

No timing thresholds here: timings depend on the machine and its load; bench/run.py reports them.
The bundled model is used when it is there, else a tiny random one saved in the same layout.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from bench.models import GOOGLE_256_UNET  # noqa: E402
from bench.run import main  # noqa: E402
from bench.timing import median, paired_ratio  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    bundled = ROOT / "models" / "mnist-ddpm"
    if (bundled / "config.json").is_file() and (bundled / "diffusion_pytorch_model.safetensors").is_file():
        return str(bundled)
    from diffusers import DDPMScheduler
    from src.train import make_unet

    folder = tmp_path_factory.mktemp("tiny-model")
    make_unet(block_out_channels=(8, 16, 16)).save_pretrained(folder)
    DDPMScheduler(num_train_timesteps=1000, clip_sample=False).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def quick_run(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.md"
    results = main(["--quick", "--model", model_dir, "--out", str(out)])
    return results, out.read_text()


def rows_of(results, item):
    return [r for r in results.rows if str(r["item"]) == str(item)]


@pytest.mark.slow
def test_table_is_written(quick_run):
    results, text = quick_run
    assert "| # | what | course | reference | ratio | target | met? |" in text
    assert "## Machine" in text and "torch threads" in text and "CPU:" in text
    assert "QUICK MODE" in text
    for item in (1, 2, 3, 4, 6, 7):
        assert rows_of(results, item), f"no row for issue item {item}"
    assert "nan" not in text.lower().replace("nano", "")


@pytest.mark.slow
def test_ratios_are_numbers(quick_run):
    results, _ = quick_run
    for r in results.rows:
        if r["ratio"] != "-":
            assert float(r["ratio"].split("x")[0]) > 0, r


@pytest.mark.slow
def test_course_images_equal_ddim_pipeline(quick_run):
    results, _ = quick_run
    equal = [r for r in rows_of(results, 2) if "DDIMPipeline images" in r["what"]]
    assert len(equal) == 2  # the sample of 16 (4 in quick mode) and the pair
    assert all(r["met"] == "yes" for r in equal), equal


@pytest.mark.slow
def test_course_images_equal_seed_loops(quick_run):
    results, _ = quick_run
    equal = [r for r in rows_of(results, 3) if "course images = seed images" in r["what"]]
    assert len(equal) == 2  # the bundled model and the 256-px architecture
    assert all(r["met"] == "yes" for r in equal), equal


@pytest.mark.slow
def test_grid_cells_equal_seed_nested_loops(quick_run):
    """Every cell of the course's batched grid equals the seed's cell (F.sample's trajectory with a
    per-row start_index)."""
    results, _ = quick_run
    equal = [r for r in rows_of(results, 4) if "cell" in r["what"] and "=" in r["what"]]
    assert len(equal) == 1
    assert equal[0]["met"] == "yes", equal


@pytest.mark.slow
def test_memory_and_start_up_measured(quick_run):
    results, _ = quick_run
    memory = [r for r in rows_of(results, 7) if "memory" in r["what"].lower()]
    assert memory and memory[0]["course"].endswith("MiB")
    assert any("Load the bundled model" in r["what"] for r in results.rows)


def test_google_256_architecture_matches_the_published_config():
    """The stand-in's config is google/ddpm-celebahq-256's (shared/ECOSYSTEM.md): 113.7 M parameters."""
    from diffusers import UNet2DModel

    cfg = GOOGLE_256_UNET
    assert cfg["block_out_channels"] == (128, 128, 256, 256, 512, 512)
    assert cfg["down_block_types"][4] == "AttnDownBlock2D" and cfg["up_block_types"][1] == "AttnUpBlock2D"
    import torch

    with torch.device("meta"):
        unet = UNet2DModel(**cfg)
    params = sum(p.numel() for p in unet.parameters())
    assert 113.0e6 < params < 114.5e6, params


def test_paired_ratio_cancels_drift_between_repeats():
    """Each repeat times both sides back to back: a machine twice as slow in one repeat must not move the
    ratio, while the ratio of the two medians would."""
    # the machine changes speed from repeat to repeat; within each, the course takes 1.1x the reference
    times = {"course": [2.2, 3.3, 1.1], "reference": [2.0, 3.0, 1.0]}
    assert paired_ratio(times, "course", "reference") == pytest.approx(1.1)
    times["course"][0] = 1.1  # one repeat where only the course was lucky: the medians now say 1.1 / 2.0
    assert paired_ratio(times, "course", "reference") == pytest.approx(1.1)
    assert median(times["course"]) / median(times["reference"]) == pytest.approx(0.55)


def test_the_gpu_script_runs_end_to_end_on_a_cpu(tmp_path):
    """bench/gpu.py is for a session lent a GPU, with minutes of device time: its --quick path runs here, so the
    first try there is not spent on a typo. On one device the two sides of each comparison are bit-identical."""
    import re
    import subprocess

    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--out", str(tmp_path), "--device", "cpu",
                    "--quick"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    text = (tmp_path / "results_gpu.md").read_text()
    found = re.findall(r"\| ([\d.e+-]+) \((yes|no)\) \|", text)
    assert len(found) == 2, text
    assert all(float(d) == 0.0 and ok == "yes" for d, ok in found), text
    assert (tmp_path / "gpu_sample_256.png").stat().st_size > 1000
