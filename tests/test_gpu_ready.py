"""What can be checked of the GPU path without a GPU (issue #22): `device: auto` picks CUDA when torch has it,
and every random number the course draws comes from a CPU generator, so a seeded image on a GPU starts from the
same numbers as on the CPU (the UNet's float arithmetic then differs only to float tolerance)."""
import ast

import pytest
import torch

from src import functions as F
from src import models
from src.files import repo_path

RANDOM = {"randn", "rand", "randint", "randn_like", "rand_like", "randint_like", "normal", "multinomial", "randperm"}


def test_auto_picks_cuda_when_torch_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.pick_device("auto").type == "cuda"
    assert models.pick_device("cuda").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.pick_device("auto").type in ("cpu", "mps")


def random_calls():
    """Every call of a torch random function in src/: (file:line, keyword names)."""
    for path in sorted(repo_path("src").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RANDOM:
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id == "torch":
                    yield f"{path.name}:{node.lineno}", {k.arg for k in node.keywords}


def test_every_random_draw_in_src_uses_a_generator_on_the_cpu():
    calls = list(random_calls())
    assert len(calls) > 10, "the scan finds the course's draws"
    no_generator = [where for where, kw in calls if "generator" not in kw]
    on_a_device = [where for where, kw in calls if "device" in kw]
    assert not no_generator, f"random draws without a generator: {no_generator}"
    assert not on_a_device, f"random draws on a device (a GPU would draw other numbers): {on_a_device}"


def test_noise_for_a_gpu_tensor_is_drawn_on_the_cpu_first():
    """F.randn_like draws on the CPU and moves the numbers: the same as the CPU's for the same generator."""
    x = torch.zeros(2, 3, 4, 4)
    a = F.randn_like(x, torch.Generator().manual_seed(5))
    b = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    if not torch.cuda.is_available():
        pytest.skip("no GPU here: the move to CUDA itself is checked where one is")
    assert torch.equal(F.randn_like(x.cuda(), torch.Generator().manual_seed(5)).cpu(), b)
