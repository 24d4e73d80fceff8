"""src/anatomy.py (notebook 06, "Inside the UNet"): every number is read from the model the way diffusers computes it."""

import pytest
import torch

from src import anatomy
from src.train import make_unet


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return make_unet(block_out_channels=(8, 16, 16)).eval()


def test_parameter_counts_add_up_to_every_parameter(unet):
    rows = anatomy.parameter_counts(unet)
    assert sum(n for _, n in rows) == sum(p.numel() for p in unet.parameters())
    names = [name for name, _ in rows]
    assert names[:3] == ["time_embedding (MLP)", "class_embedding", "conv_in"] and "mid_block" in names
    unconditional = make_unet(False, block_out_channels=(8, 16, 16))
    assert "class_embedding" not in [name for name, _ in anatomy.parameter_counts(unconditional)]


def test_architecture_is_measured_from_a_forward_pass(unet):
    stages = anatomy.architecture(unet)
    assert [s["name"] for s in stages][0] == "conv_in" and stages[-1]["name"] == "conv_out"
    assert [s["size_in"] for s in stages if s["name"].startswith("down")] == [28, 14, 7]
    assert [s["size_out"] for s in stages if s["name"].startswith("up")] == [14, 28, 28]
    assert [s["attention"] for s in stages].count(True) == 1 and stages[4]["name"] == "mid_block"
    assert stages[0]["channels_in"] == 1 and stages[-1]["channels_out"] == 1
    for a, b in zip(stages, stages[1:]):  # the main path: each stage takes what the one before gives
        assert (a["channels_out"], a["size_out"]) == (b["channels_in"], b["size_in"]), (a, b)


def test_skip_connections_are_the_ones_the_up_path_takes(unet):
    stages = anatomy.architecture(unet)
    links = anatomy.skip_connections(stages)
    assert len(links) == sum(len(b.resnets) for b in unet.up_blocks) == sum(len(s["skips"]) for s in stages)
    for j, k, c, h in links:  # a skip joins an up block working at its resolution
        assert j < k and stages[k]["name"].startswith("up") and stages[k]["size_in"] == h


def test_the_time_embedding_is_diffusers_sinusoid(unet):
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0, 1, 500, 999])
    sinusoid, after = anatomy.time_embedding(unet, t)
    want = get_timestep_embedding(t, 8, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(sinusoid, want)
    assert after.shape == (4, 32)


def test_the_class_table_ends_with_no_class(unet):
    table, cosine = anatomy.class_embeddings(unet)
    assert table.shape == (11, 32) and cosine.shape == (11, 11)
    torch.testing.assert_close(cosine.diagonal(), torch.ones(11))


def test_scale_and_shift_are_what_the_block_applies(unet):
    """Rebuild ResnetBlock2D.forward by hand with anatomy's scale and shift: it must give the block's own output."""
    import torch.nn.functional as nnf

    block = unet.get_submodule("down_blocks.1.resnets.0")
    t, labels = torch.tensor([3, 700]), torch.tensor([2, 10])
    scale, shift = anatomy.scale_shift(unet, "down_blocks.1.resnets.0", t, labels)
    assert scale.shape == shift.shape == (2, block.conv1.out_channels)
    _, emb = anatomy.time_embedding(unet, t)
    emb = emb + unet.class_embedding(labels)
    x = torch.randn(2, block.conv1.in_channels, 14, 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = block.norm2(block.conv1(nnf.silu(block.norm1(x))))
        h = block.conv2(nnf.silu(h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]))
        want = (block.conv_shortcut(x) if block.conv_shortcut is not None else x) + h
        torch.testing.assert_close(block(x, emb), want, atol=1e-5, rtol=1e-5)


def test_scale_shift_needs_scale_shift_blocks():
    from diffusers import UNet2DModel

    plain = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                        norm_num_groups=4, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    with pytest.raises(ValueError, match="scale_shift"):
        anatomy.scale_shift(plain, "down_blocks.0.resnets.0", torch.tensor([0]), None)


def test_conditioning_spread_sees_no_label_effect_without_a_class_table(unet):
    import copy

    blind = copy.deepcopy(unet)
    torch.nn.init.zeros_(blind.class_embedding.weight)
    spread = anatomy.conditioning_spread(blind, ["down_blocks.0.resnets.0", "mid_block.resnets.0"])
    assert torch.all(spread["label"] == 0) and torch.all(spread["time"] > 0)


def test_source_lines_are_in_the_installed_diffusers():
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.unets.unet_2d import UNet2DModel

    path, line, code = anatomy.source_line(ResnetBlock2D.forward, "* (1 + time_scale)")
    assert path == "diffusers/models/resnet.py" and "time_shift" in code
    import diffusers.models.resnet as module
    assert open(module.__file__).read().splitlines()[line - 1].strip() == code
    path, _, code = anatomy.source_line(UNet2DModel.__init__, "nn.Embedding(num_class_embeds")  # through the decorator
    assert path == "diffusers/models/unets/unet_2d.py" and "class_embedding" in code
    with pytest.raises(LookupError):
        anatomy.source_line(ResnetBlock2D.forward, "a line that is not there")


def test_flops_and_ops_of_a_training_step(unet):
    before = [p.clone() for p in unet.parameters()]
    counted, by_hand, total = anatomy.training_step_flops(unet, 4)
    counted8, _, _ = anatomy.training_step_flops(unet, 8)
    assert counted > 0 and by_hand > 0 and total == counted + by_hand
    assert counted8 == pytest.approx(2 * counted, rel=0.05)  # convolutions scale with the batch
    assert anatomy.training_step_ops(unet, 4) > 100
    assert all(torch.equal(a, b) for a, b in zip(before, unet.parameters())) and unet.conv_in.weight.grad is None


def test_gpu_seconds_is_arithmetic():
    compute, launch, estimate = anatomy.gpu_seconds(1e12, 1000, 100, peak=8e12, efficiency=0.25, seconds_per_op=1e-5)
    assert compute == pytest.approx(50) and launch == pytest.approx(1) and estimate == compute
    with pytest.raises(ValueError):
        anatomy.gpu_seconds(1, 1, 1, efficiency=0)


def test_label_benefit_is_a_control(unet):
    """With every row of the class table equal, the label cannot matter: the two errors are the same."""
    import copy

    from src.train import training_alphas_cumprod

    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    same = copy.deepcopy(unet)
    with torch.no_grad():
        same.class_embedding.weight[:] = same.class_embedding.weight[0]
    r = anatomy.label_benefit(same, images, labels, training_alphas_cumprod(), seeds=2, batch_size=4)
    assert r["t"].shape == r["conditional"].shape == (2, 6)
    torch.testing.assert_close(r["conditional"], r["unconditional"])
    binned = anatomy.label_benefit_by_t(r, edges=(0, 500, 1000))
    assert binned["gain"].shape == (2, 2) and torch.allclose(binned["overall_gain"], torch.zeros(2), atol=1e-6)
