"""Training (src/train.py) on a tiny real UNet: resuming from the checkpoint continues the very same run."""

import json

import pytest
import torch

from src.files import PROJECT_ROOT
from src.train import make_unet, train_diffusion


class CutOff(Exception):
    pass


def tiny_run(out, steps, stop_at=None, resume=False):
    torch.manual_seed(0)  # the same initial weights every time
    unet = make_unet(True, sample_size=8, block_out_channels=(8, 16))
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    labels = torch.randint(0, 10, (24,), generator=torch.Generator().manual_seed(2))

    def cut(step, ema):  # a session ending mid-run: after the checkpoint at stop_at is written
        if step == stop_at:
            raise CutOff

    return train_diffusion(unet, images, labels, steps=steps, batch_size=4, warmup=2, out=out, save_every=3,
                           resume=resume, callback=cut, progress=False)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    ema_straight, losses_straight = tiny_run(tmp_path / "straight", 9)

    with pytest.raises(CutOff):
        tiny_run(tmp_path / "cut", 9, stop_at=6)
    assert json.loads((tmp_path / "cut" / "training.json").read_text())["steps"] == 6
    ema_resumed, losses_resumed = tiny_run(tmp_path / "cut", 9, resume=True)

    assert losses_resumed == losses_straight  # the same batches, noise and timesteps, in the same order
    for (name, a), b in zip(ema_straight.state_dict().items(), ema_resumed.state_dict().values()):
        assert torch.equal(a, b), name
    log = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert log["steps"] == 9
    assert [(r["from_step"], r["until_step"]) for r in log["runs"]] == [(0, 6), (6, 9)]
    rows = (tmp_path / "cut" / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss" and len(rows) == 10
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "checkpoint.pt"} <= {
        p.name for p in (tmp_path / "cut").iterdir()}


@pytest.mark.parametrize("argv, says", [
    (["ddpm"], "already holds a trained model"),                      # the shipped model is never overwritten
    (["classifier"], "already holds a trained model"),                # nor the classifier that grades it
    (["ddpm", "--resume"], "--resume needs"),                         # a fresh checkout has no optimizer state
    (["ddpm", "--device", "tpu"], "invalid choice"),
    (["ddpm", "--channels", "16,x"], "positive multiples of 8"),      # one sentence, not a traceback
    (["ddpm", "--channels", "12,24"], "positive multiples of 8"),     # GroupNorm(8) would fail deep in diffusers
])
def test_training_refuses_before_any_work(argv, says, capsys):
    from src.train import main

    shipped = {p: p.stat().st_mtime_ns for p in (PROJECT_ROOT / "models").rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and says in capsys.readouterr().err
    assert shipped == {p: p.stat().st_mtime_ns for p in (PROJECT_ROOT / "models").rglob("*") if p.is_file()}


def test_resume_asks_for_more_steps_than_done(tmp_path, capsys):
    from src.train import main

    with pytest.raises(CutOff):
        tiny_run(tmp_path / "cut", 9, stop_at=3)
    with pytest.raises(SystemExit):
        main(["ddpm", "--resume", "--steps", "3", "--out", str(tmp_path / "cut")])
    assert "not more than the 3 steps" in capsys.readouterr().err


def test_command_line_resume_keeps_the_folders_architecture(tmp_path):
    """--channels sets the widths; --resume must rebuild the checkpoint's widths, not the default ones."""
    from src.train import main

    out = str(tmp_path / "narrow")
    main(["ddpm", "--steps", "2", "--batch-size", "4", "--channels", "8,16", "--save-every", "1", "--out", out])
    main(["ddpm", "--resume", "--steps", "3", "--batch-size", "4", "--save-every", "1", "--out", out])
    config = json.loads((tmp_path / "narrow" / "config.json").read_text())
    assert config["block_out_channels"] == [8, 16]
    assert json.loads((tmp_path / "narrow" / "training.json").read_text())["steps"] == 3


def test_resume_from_another_directory_with_a_relative_out(tmp_path, monkeypatch):
    """--out is taken from the repository root everywhere, the resume's config.json included (it was read from
    the working directory, so a resume started elsewhere passed the check and then failed)."""
    import shutil

    from src import files
    from src.train import main

    root = tmp_path / "course"
    (root / "data").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "data" / "mnist_10k.npz", root / "data")
    monkeypatch.setattr(files, "PROJECT_ROOT", root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = ["--batch-size", "4", "--channels", "8,16", "--save-every", "1", "--out", "runs/narrow"]
    main(["ddpm", "--steps", "2", *args])
    main(["ddpm", "--resume", "--steps", "3", *args])
    assert json.loads((root / "runs" / "narrow" / "training.json").read_text())["steps"] == 3
    assert not (elsewhere / "runs").exists()
