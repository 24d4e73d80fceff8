"""src/trace.py: F.unet_forward runs the UNet as a TorchScript trace on the CPU, bit-identical to the module,
and never a stale one: a swapped processor, submodule or parameter gets a new trace."""

import copy

import pytest
import torch

from src import functions as F
from src import trace


# --- F.unet_forward: the UNet as a TorchScript trace on the CPU ---------------------------------------

def _attention_unet():
    """Unconditional, 3 channels, with attention blocks (the kinds google/ddpm-celebahq-256 is made of)."""
    from diffusers import UNet2DModel

    torch.manual_seed(1)
    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4).eval()


def _inputs(unet, batch, seed):
    g = torch.Generator().manual_seed(seed)
    c, s = unet.config.in_channels, unet.config.sample_size
    x = torch.randn(batch, c, s, s, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    n = unet.config.num_class_embeds
    return x, t, (None if n is None else torch.randint(0, n, (batch,), generator=g))


@pytest.mark.parametrize("which", ["class-conditional", "attention blocks"])
def test_unet_forward_is_bit_identical_to_the_module_at_any_batch_size(tiny_unet, which):
    """One trace, made at the first batch size, gives exactly the module's output at the others too
    (65 crosses diffusers' one batch-size branch, which gets its own trace)."""
    unet = copy.deepcopy(tiny_unet) if which == "class-conditional" else _attention_unet()
    with torch.inference_mode():
        for i, batch in enumerate([2, 1, 5, 65, 2]):
            x, t, labels = _inputs(unet, batch, seed=i)
            assert torch.equal(F.unet_forward(unet, x, t, labels), unet(x, t, class_labels=labels).sample), batch
    assert len(trace._TRACES[unet].by_signature) == 2  # batch < 64 and batch >= 64: the trace was used, and reused


def test_unet_forward_follows_the_weights(tiny_unet):
    """The trace shares the UNet's weight tensors: in-place updates and load_state_dict show at once;
    weights replaced by new tensors (.double()) get a new trace."""
    unet = copy.deepcopy(tiny_unet)
    x, t, labels = _inputs(unet, 3, seed=0)
    with torch.inference_mode():
        before = F.unet_forward(unet, x, t, labels)
    with torch.no_grad():
        for p in unet.parameters():
            p.mul_(1.1)
    with torch.inference_mode():
        changed = F.unet_forward(unet, x, t, labels)
        assert not torch.equal(changed, before)
        assert torch.equal(changed, unet(x, t, class_labels=labels).sample)
    unet.load_state_dict(tiny_unet.state_dict())
    with torch.inference_mode():
        assert torch.equal(F.unet_forward(unet, x, t, labels), before)
        unet.double()
        out = F.unet_forward(unet, x.double(), t, labels)
        assert out.dtype == torch.float64 and torch.equal(out, unet(x.double(), t, class_labels=labels).sample)
    assert len(trace._TRACES[unet].by_signature) == 2


def test_unet_forward_calls_the_module_when_a_trace_would_skip_something(tiny_unet):
    unet = copy.deepcopy(tiny_unet)
    x, t, labels = _inputs(unet, 2, seed=0)
    out = F.unet_forward(unet, x, t, labels)  # gradients on: training needs autograd through the module
    assert out.requires_grad and out.grad_fn is not None
    assert not trace._TRACES.get(unet)  # no trace made
    with torch.inference_mode():
        F.unet_forward(unet, x, t, labels)
    assert len(trace._TRACES[unet].by_signature) == 1
    calls = []
    hook = unet.mid_block.register_forward_hook(lambda *args: calls.append(1))  # after the trace was made
    with torch.inference_mode():
        F.unet_forward(unet, x, t, labels)
    hook.remove()
    assert calls == [1]  # a hook (the benchmark's label hook, a student's probe) runs
    unet.train()
    with torch.inference_mode():
        out = F.unet_forward(unet, x[:1], t[:1], labels[:1])
    assert torch.equal(out, unet(x[:1], t[:1], class_labels=labels[:1]).sample)
    assert len(trace._TRACES[unet].by_signature) == 1  # train mode: no new trace


def test_unet_forward_falls_back_to_the_module_where_torch_cannot_trace(tiny_unet, monkeypatch):
    def no_torchscript(*args, **kwargs):
        raise RuntimeError("TorchScript is not available")
    monkeypatch.setattr(torch.jit, "trace", no_torchscript)
    unet = copy.deepcopy(tiny_unet)
    x, t, labels = _inputs(unet, 2, seed=0)
    with torch.inference_mode():
        assert torch.equal(F.unet_forward(unet, x, t, labels), unet(x, t, class_labels=labels).sample)
        assert torch.equal(F.unet_forward(unet, x, t, labels), unet(x, t, class_labels=labels).sample)
    assert list(trace._TRACES[unet].by_signature.values()) == [None]  # tried once, then plain calls


def test_traces_go_with_their_unet(tiny_unet):
    import gc
    import weakref

    unet = copy.deepcopy(tiny_unet)
    with torch.inference_mode():
        F.unet_forward(unet, *_inputs(unet, 2, seed=0))
    assert len(trace._TRACES[unet].by_signature) == 1
    alive = weakref.ref(unet)
    del unet
    gc.collect()
    assert alive() is None


def test_a_swapped_attention_processor_gets_a_new_trace():
    """The trace of the old processor must not run after Attention.set_processor: the new one's output is returned."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    class Doubled(AttnProcessor):  # a different computation: the attention output twice
        def __call__(self, attn, hidden_states, *args, **kwargs):
            return 2 * super().__call__(attn, hidden_states, *args, **kwargs) - hidden_states

    unet = _attention_unet()
    x, t, _ = _inputs(unet, 2, seed=0)
    with torch.inference_mode():
        before = F.unet_forward(unet, x, t)
        assert len(trace._TRACES[unet].by_signature) == 1
        for module in unet.modules():
            if isinstance(module, Attention):
                module.set_processor(Doubled())
        after = F.unet_forward(unet, x, t)
        expected = unet(x, t).sample
    assert not torch.equal(after, before)
    assert torch.equal(after, expected)


def test_a_swapped_submodule_or_parameter_gets_a_new_trace(tiny_unet):
    unet = copy.deepcopy(tiny_unet)
    x, t, labels = _inputs(unet, 2, seed=0)
    with torch.inference_mode():
        before = F.unet_forward(unet, x, t, labels)
        unet.conv_out = torch.nn.Conv2d(unet.conv_out.in_channels, unet.conv_out.out_channels, 3, padding=1)
        swapped = F.unet_forward(unet, x, t, labels)
        assert not torch.equal(swapped, before) and torch.equal(swapped, unet(x, t, class_labels=labels).sample)
        unet.conv_in.weight = torch.nn.Parameter(torch.zeros_like(unet.conv_in.weight))
        zeroed = F.unet_forward(unet, x, t, labels)
        assert torch.equal(zeroed, unet(x, t, class_labels=labels).sample) and not torch.equal(zeroed, swapped)


def test_large_images_go_through_the_unet_one_at_a_time_with_the_same_result():
    """src/trace.py's one_at_a_time: a batch of 128-px images is split on the CPU (faster there at 256 px), each
    image gets its own t and label, and the result equals the batched call to float tolerance; 28 px is not split."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=128, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(4, 8),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=3).eval()
    sizes = []
    unet.register_forward_pre_hook(lambda m, args, kw: sizes.append((args[0] if args else kw["sample"]).shape[0]),
                                   with_kwargs=True)
    x = torch.randn(3, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    t, labels = torch.tensor([10, 500, 990]), torch.tensor([0, 2, 1])
    with torch.inference_mode():
        split = F.unet_forward(unet, x, t, labels)
        assert sizes == [1, 1, 1]
        batched = unet(x, t, class_labels=labels).sample
        small = F.unet_forward(unet, x[:, :, :28, :28], t, labels)
    assert sizes[-1] == 3, "a 28-px batch stays one call"
    assert small.shape == (3, 1, 28, 28)
    assert torch.allclose(split, batched, atol=1e-5, rtol=1e-5)
    assert not torch.equal(split[0], split[1]), "each image with its own t"


def test_large_images_are_not_traced():
    """At 128x128 and more a call takes seconds and recording a trace costs more than one: plain calls only."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=128, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(4, 8),
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    x, t = torch.randn(1, 1, 128, 128, generator=torch.Generator().manual_seed(1)), torch.tensor([500])
    with torch.inference_mode():
        assert torch.equal(F.unet_forward(unet, x, t), unet(x, t).sample)
        F.unet_forward(unet, x[:, :, :64, :64], t)  # 64 px: traced
    assert [shape for shape, *_ in trace._TRACES[unet].by_signature] == [(1, 64, 64)]  # the 128-px call made none
