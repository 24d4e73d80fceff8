"""Speed: run a UNet as a TorchScript trace of itself on the CPU. Changes how fast a call is, never what it returns.

F.unet_forward asks `traced_call(unet, inputs)` for a trace and makes the plain call when it gets None.
A trace replays the same kernels on the same (shared, not copied) weights, so its output is bit-identical
(tests/test_trace.py), minus the Python work of some 140 module calls per forward: about a third of a call's
time at batch 1-2 for the course's small model (bench/results.md).

A trace records the UNet as it was when traced. So each UNet's traces are keyed by:
  - the input signature (shapes after the batch, dtypes, and batch >= 64: the one Python branch diffusers
    takes on these inputs, a .contiguous() from batch 64, is then part of the signature);
  - the weights' storage (a .to() or a new tensor needs a new trace);
  - the module tree itself: every submodule, parameter and attention processor, by identity. Swapping any
    of them (unet.set_attn_processor, assigning a new block or parameter) drops the UNet's traces, and the
    next call traces the new UNet. The tree is compared object by object on every call (about 30 us for
    the course's model), and the snapshot holds the objects, so an id can never be reused by a new one.
No trace is used where it would skip something: gradients (training), a UNet in train mode, forward hooks
(hooks added later too: the hook dicts are watched), or a GPU; nor where it cannot pay: images of 128x128 and
more, where a call takes seconds, the trace saves milliseconds, and recording it costs more than a call.
"""

from __future__ import annotations

import operator
import warnings
import weakref

import torch


class _UNetCall(torch.nn.Module):
    """unet(x_t, t, class_labels).sample with tensors in and a tensor out: the form torch.jit.trace records."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x_t, t, class_labels=None):
        return self.unet(x_t, t, class_labels=class_labels, return_dict=False)[0]


def _parts(modules):
    """What each module holds, in order: submodules, parameters, buffers, and an attention processor (diffusers'
    Attention.processor). A swapped or added part shows up here in its parent's entry."""
    return [part for m in modules
            for part in (*m._modules.values(), *m._parameters.values(), *m._buffers.values(),
                         *((m.processor,) if "processor" in m.__dict__ else ()))]


class _Traces:
    """One UNet's traces by signature, the module tree they were made from, and the hook dicts to watch.
    Holds no reference to the UNet itself, so its entry in _TRACES goes when the UNet does."""

    def __init__(self, unet):
        from torch.nn.modules import module

        self.modules = list(unet.modules())[1:]  # without the UNet itself (the weak key)
        self.parts = _parts([unet, *self.modules])  # holds the objects, so no id is ever reused
        self.hooks = [d for m in (unet, *self.modules) for d in (m._forward_hooks, m._forward_pre_hooks)]
        self.hooks += [module._global_forward_hooks, module._global_forward_pre_hooks]
        self.by_signature = {}

    def still_matches(self, unet):
        parts = _parts([unet, *self.modules])
        return len(parts) == len(self.parts) and all(map(operator.is_, parts, self.parts))


_TRACES = weakref.WeakKeyDictionary()  # unet -> _Traces


LARGE_IMAGE_PIXELS = 128 * 128  # images this large go through the UNet one by one on a CPU, untraced (and
                                # src/course.py use_all_cores gives their notebooks every core)


def one_at_a_time(x_t):
    """True where a batch runs faster split into single images: large images on a CPU, without gradients.

    Measured here (google/ddpm-celebahq-256's architecture, 1 thread): batch 1 4.7 s, batch 4 5.3 s per image,
    and in the notebooks' batches of 9-10 about 7 s per image; four single calls 4.8 s per image. On 2 threads
    (what a notebook gives such a model, src/course.py use_all_cores): batch 4 4.1-4.5 s, single calls 2.4-2.5 s. A 28-px batch is
    the other way round (batching is what makes the bundled model fast), so small images are never split.
    """
    return (x_t.device.type == "cpu" and x_t.shape[0] > 1 and not torch.is_grad_enabled()
            and x_t.shape[-1] * x_t.shape[-2] >= LARGE_IMAGE_PIXELS)


def traced_call(unet, inputs):
    """The trace to run on these inputs (x_t, t[, class_labels]), or None where the plain call must run."""
    x_t = inputs[0]
    if x_t.device.type != "cpu" or torch.is_grad_enabled() or unet.training:
        return None
    if x_t.shape[-1] * x_t.shape[-2] >= LARGE_IMAGE_PIXELS:  # see the module docstring: it cannot pay here
        return None
    traces = _TRACES.get(unet)
    if traces is None or not traces.still_matches(unet):
        traces = _TRACES[unet] = _Traces(unet)  # a swapped part: every old trace of this UNet is dropped
    if any(traces.hooks):
        return None
    weights = next(unet.parameters())
    signature = (tuple(x_t.shape[1:]), x_t.shape[0] >= 64, tuple((a.dim(), a.dtype) for a in inputs),
                 weights.dtype, weights.data_ptr())  # a new weight tensor (.to(), assign) needs a new trace
    if signature not in traces.by_signature:
        traces.by_signature[signature] = _trace(unet, inputs)
    return traces.by_signature[signature]


def _trace(unet, inputs):
    """torch.jit.trace of the UNet call, or None where this torch cannot trace it (then calls stay plain).

    torch 2.13 marks torch.jit.trace deprecated in favour of torch.compile and torch.export. On a 2-core
    CPU, torch.compile took 140 s for its first call and 118 s more for a second batch size, and its
    output differs by 2e-6; torch.export took 5 s, fixed batch 1 apart, and ran a call at batch 2 in
    14.8 ms against the trace's 11.6 ms (the module: 19.0 ms).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # one per Python branch it fixes, see above
            return torch.jit.trace(_UNetCall(unet), inputs, check_trace=False)
        except Exception:  # noqa: BLE001 - a torch without TorchScript, or a UNet it cannot trace
            return None
