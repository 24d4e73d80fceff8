"""Notebook 05's measurements (src/editing.py): the new helpers on tiny inputs, and the cheap claims of the
text on the bundled model at the notebook's full settings (a few seconds: 10 DDIM steps, 8 seeds)."""

import pytest
import torch
from torch.testing import assert_close

from src import editing as E
from src import functions as F

STEPS = 5


@pytest.fixture(scope="module")
def alphas_cumprod():
    return F.alphas_cumprod_from_betas(F.linear_betas(1000))


def noise(n, seed=0, size=8):
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# --- helpers on tiny inputs ----------------------------------------------------------------------------

def test_chunked_forward_is_the_plain_call(tiny_unet):
    x, t, labels = noise(5), torch.full((5,), 300), torch.tensor([0, 1, 2, 0, 1])
    with torch.inference_mode():
        assert_close(E.chunked_forward(tiny_unet, x, t, labels, max_batch=2), F.unet_forward(tiny_unet, x, t, labels),
                     atol=1e-5, rtol=1e-5)


def test_sdedit_with_one_noise_per_column(tiny_unet, alphas_cumprod):
    images, eps = noise(2, seed=1).clamp(-1, 1), noise(3, seed=2)
    edited, noisy = E.sdedit(tiny_unet, images, [0, 1, 3], alphas_cumprod, STEPS, noise=eps[None], progress=False)
    assert edited.shape == (2, 3, 1, 8, 8)
    t = F.ddim_timesteps(STEPS)[torch.tensor([0, 1, 3])]
    for n in range(2):  # column k of every input was noised with eps[k] (DDPM Eq. 4)
        assert_close(noisy[n], F.forward_jump(images[n].expand(3, -1, -1, -1), t, alphas_cumprod, noise=eps))


def test_sdedit_toward_rows(tiny_unet, alphas_cumprod):
    image, seeds = noise(1, seed=3).clamp(-1, 1), noise(2, seed=4)
    out = E.sdedit_toward(tiny_unet, image, [1, 3], alphas_cumprod, seeds, [None, 1], [3.0, 3.0], STEPS)
    assert out.shape == (2, 2, 2, 1, 8, 8)
    # the unconditional row is plain SDEdit with the same noise; the labelled row is guided SDEdit
    x_t = F.noise_to_level(image.expand(2, -1, -1, -1), 3, STEPS, alphas_cumprod, noise=seeds)
    free = F.sample(tiny_unet, x_t, alphas_cumprod, STEPS, start_index=3, progress=False)
    toward = F.sample(tiny_unet, x_t, alphas_cumprod, STEPS, start_index=3, class_labels=torch.tensor([1, 1]),
                      guidance_scale=3.0, progress=False)
    assert_close(out[0, :, 1], free, atol=1e-4, rtol=1e-4)
    assert_close(out[1, :, 1], toward, atol=1e-4, rtol=1e-4)


def test_border_seam_counts_jumps_across_the_border_only():
    mask = E.box_mask(4, 0, 0, 0.5, 1)  # left half generated: border between columns 1 and 2
    x = -torch.ones(1, 1, 4, 4)
    x[..., :, :2] = 1.0  # a step of 2 exactly at the border
    assert_close(E.border_seam(x, mask), torch.tensor([2.0]))
    smooth = -torch.ones(1, 1, 4, 4)
    smooth[..., :, 0] = 1.0  # a step inside the mask only
    assert_close(E.border_seam(smooth, mask), torch.tensor([0.0]))


def test_from_afar_keeps_the_mean_and_the_size():
    x = noise(2, seed=5, size=28)
    small, seen = E.from_afar(x, 4)
    assert small.shape == (2, 1, 7, 7) and seen.shape == x.shape
    assert_close(small.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5, rtol=1e-5)


def test_wobbly_moves_every_point_a_little_and_is_seeded():
    strokes = [[(0.2, 0.2), (0.8, 0.2)], [(0.5, 0.3), (0.5, 0.9)]]
    shaky = E.wobbly(strokes, amount=0.02, seed=1, points_per_segment=4)
    assert [len(s) for s in shaky] == [5, 5]
    assert shaky == E.wobbly(strokes, amount=0.02, seed=1, points_per_segment=4)
    assert max(abs(a - b) for (x, y), (x2, y2) in zip(shaky[0], [(0.2 + 0.15 * k, 0.2) for k in range(5)])
               for a, b in ((x, x2), (y, y2))) < 0.1
    assert E.wobbly(strokes, amount=0.0)[0][2] == pytest.approx((0.5, 0.2))


def test_score_sweep_spread_and_ink():
    class Fixed(torch.nn.Module):  # "classifies" every image by its top-left pixel
        def forward(self, x):
            return 10 * torch.nn.functional.one_hot(x[:, 0, 0, 0].long().clamp(0, 9), 10).float()

    samples = -torch.ones(2, 4, 1, 28, 28)
    samples[0, :, 0, 0, 0] = torch.tensor([1.0, 2.0, 1.0, 2.0])  # all right
    samples[1, :, 0, 0, 0] = torch.tensor([1.0, 1.0, 3.0, 2.0])  # half right
    samples[1, :, 0, 5, 5] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # different images
    scores = E.score_sweep(Fixed(), samples, torch.tensor([1, 2, 1, 2]))
    assert_close(scores["accuracy"], torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert scores["accuracy_se"][0] == 0 and scores["accuracy_se"][1] > 0
    assert scores["n"] == 4 and scores["digits"] == 2 and scores["per_digit_diversity"].shape == (2, 2)
    assert scores["ink"][1] > scores["ink"][0]


def test_nearest_layout_and_rates():
    refs = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 1.0, 2.0)])
    assert E.nearest(refs + 0.1, refs).tolist() == [0, 1, 2]
    same, other = E.layout_kept(refs, refs + 0.1, torch.tensor([0, 0, 0]))
    assert same < other
    p, se = E.rate_and_se(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]))
    assert_close(p, torch.tensor([1.0, 0.25])) and se[0] == 0 and se[1] > 0


# --- the cheap claims of notebook 05, on the bundled model, at its full settings ---------------------------

@pytest.fixture(scope="module")
def bundled():
    from src.classifier import load_classifier
    from src.models import load_model

    model = load_model("models/mnist-ddpm", device="cpu")
    return model, load_classifier()


def test_hybrids_read_fine_up_close_and_coarse_from_afar_unlike_real_digits(bundled):
    from src.mnist import load_mnist

    model, clf = bundled
    (a, b), n = (1, 8), 8  # config.yaml's hybrid_classes, the notebook's n_seeds
    fn = E.hybrid_epsilon_fn(model.unet, [a, b], 2.0, guidance_scale=3.0)
    hybrids = F.sample(model.unet, model.noise(n, torch.Generator().manual_seed(0)), model.alphas_cumprod, 10,
                       epsilon_fn=fn, progress=False).cpu()
    digits, labels = load_mnist("test")
    real_b = digits[labels == b][:4 * n]
    assert E.read_as(clf, hybrids, b).mean() >= 0.75
    from_afar, real_afar = E.read_as(clf, E.from_afar(hybrids)[1], a), E.read_as(clf, E.from_afar(real_b)[1], a)
    (p, s), (q, r) = E.rate_and_se(from_afar), E.rate_and_se(real_afar)
    assert p - q > 2 * (s**2 + r**2) ** 0.5, (p, q)


def test_sdedit_from_the_noisiest_start_is_plain_sampling(bundled):
    model, _ = bundled
    drawing = E.draw_digit(E.wobbly([[(0.7, 0.2), (0.35, 0.22), (0.33, 0.5), (0.7, 0.6), (0.3, 0.8)]], seed=2), 28)
    seeds = model.noise(8, torch.Generator().manual_seed(0))
    out = E.sdedit_toward(model.unet, drawing, [0], model.alphas_cumprod, seeds, [None], [0.0], 10)[0, :, 0]
    plain = F.sample(model.unet, seeds, model.alphas_cumprod, 10, progress=False)
    assert E.nearest(out, plain).tolist() == list(range(8))
