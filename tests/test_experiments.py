"""Tests for src/experiments.py on a tiny random UNet (no download, well under a minute on one CPU thread)."""

import math

import matplotlib
import pytest
import torch

from src import experiments as E
from src import figures
from src import functions as F

matplotlib.use("Agg")
STEPS = 4  # DDIM steps: enough to exercise the loop, cheap on a CPU


def noise(n=2, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# --- similar noises ---------------------------------------------------------------------------------

def test_clone_generator_draws_the_same_numbers_and_leaves_the_original_alone():
    g = torch.Generator().manual_seed(3)
    clone = E.clone_generator(g)
    torch.testing.assert_close(torch.randn(5, generator=clone), torch.randn(5, generator=g))


def test_mix_per_sample_matches_mix_noise_row_by_row():
    n, z = noise(3, 0), noise(3, 1)
    s = torch.tensor([0.0, 0.3, 1.0])
    rows = torch.cat([F.mix_noise(n[i:i + 1], float(s[i]), other=z[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(E.mix_per_sample(n, s, z), rows)


def test_mix_factor_for_distance_hits_the_target():
    n, z = noise(4, 0), noise(4, 1)
    target = torch.tensor([0.5, 2.0, 4.0, 6.0])
    s = E.mix_factor_for_distance(n, z, target)
    assert ((s > 0) & (s < 1)).all()
    torch.testing.assert_close(F.euclidean_distance(n, E.mix_per_sample(n, s, z)), target, rtol=1e-4, atol=1e-4)


def test_patch_positions_cover_the_image_row_by_row():
    pos = E.patch_positions(28, 8, 4)
    assert len(pos) == 16 and pos[0] == (0, 0) and pos[-1] == (20, 20) and pos[1] == (7, 0)
    assert E.patch_positions(8, 8, 3) == [(0, 0)] * 9
    with pytest.raises(ValueError, match="does not fit"):
        E.patch_positions(8, 9, 2)


# --- denoising variants ---------------------------------------------------------------------------------

def test_batched_variants_equal_separate_sampling(unet, alphas_cumprod):
    n = noise(2)
    variants = torch.stack([F.mix_noise(n, 0.5, generator=torch.Generator().manual_seed(1)), -n])
    base, images = E.denoise_variants(unet, alphas_cumprod, n, variants, STEPS, progress=False)
    assert base.shape == (2, 1, 8, 8) and images.shape == (2, 2, 1, 8, 8)
    torch.testing.assert_close(base, F.sample(unet, n, alphas_cumprod, STEPS, progress=False), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(images[1], F.sample(unet, -n, alphas_cumprod, STEPS, progress=False), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sweep_at_s0_gives_zero_distance(unet, alphas_cumprod, eta):
    # with eta > 0 the variants meet the same step noises z_t as their base: s = 0 is the same image
    r = E.mix_sweep(unet, alphas_cumprod, noise(2), [0.0, 0.5], STEPS, eta=eta,
                    generator=torch.Generator().manual_seed(0), progress=False)
    assert r["input_distance"].shape == (2, 2) and r["output_distance"].shape == (2, 2)
    assert r["input_distance"][0].abs().max() == 0 and r["output_distance"][0].abs().max() < 1e-5
    assert (r["input_distance"][1] > 0).all() and (r["output_distance"][1] > 0).all()
    torch.testing.assert_close(r["mix_factors"], torch.tensor([0.0, 0.5]))


def test_sweep_is_deterministic_with_a_seed(unet, alphas_cumprod):
    run = lambda seed: E.mix_sweep(unet, alphas_cumprod, noise(2), [0.2, 1.0], STEPS, eta=0.5,
                                   generator=torch.Generator().manual_seed(seed), progress=False)
    a, b, c = run(0), run(0), run(1)
    for key in ("images", "output_distance", "base"):
        torch.testing.assert_close(a[key], b[key])
    assert not torch.allclose(a["images"], c["images"])


def test_unrelated_distance_uses_only_pairs_from_different_seeds():
    groups = torch.zeros(2, 2, 1, 1, 1)
    groups[1] = 3.0  # seed 0 at 0, seed 1 at 3: every cross-seed pair is 3 apart, same-seed pairs 0
    assert float(E.unrelated_distance(groups)) == pytest.approx(3.0)
    assert math.isnan(float(E.unrelated_distance(groups[:1])))


# --- the sweeps of notebook 03 ---------------------------------------------------------------------------

def test_patch_pairs_differ_only_in_the_patch_and_global_matches_distance(unet, alphas_cumprod):
    n = noise(2)
    r = E.patch_vs_global(unet, alphas_cumprod, n, [2, 4], STEPS, generator=torch.Generator().manual_seed(0),
                          progress=False, positions=("centre", "corner"))
    assert r["positions"] == ["centre", "corner"] and r["patch_sizes"] == [2, 4]
    for pos in ("centre", "corner"):
        for k, p in enumerate([2, 4]):
            lo = (8 - p) // 2 if pos == "centre" else 0
            diff = (r["patch"][pos]["variants"][k] != n)
            inside = torch.zeros_like(diff)
            inside[..., lo:lo + p, lo:lo + p] = True
            assert diff[inside].all() and not diff[~inside].any()
        assert r["patch"][pos]["images"].shape == (2, 2, 1, 8, 8)
    # the global mix has the d_in of the first position's patch, and touches every pixel
    torch.testing.assert_close(r["global"]["input_distance"], r["patch"]["centre"]["input_distance"], rtol=1e-4, atol=1e-4)
    assert (r["global"]["variants"] != n).flatten(2).all(dim=2).all()
    assert r["mix_factors"].shape == (2, 2)
    # every arm shares one x_0(n_1), and the default is one centred patch per size
    torch.testing.assert_close(r["patch"]["corner"]["base"], r["global"]["base"])
    assert "global mix" in E.patch_table(r) and len(E.patch_table(r).splitlines()) == 3
    assert E.patch_vs_global(unet, alphas_cumprod, n, [2], STEPS, progress=False,
                             generator=torch.Generator().manual_seed(0))["positions"] == ["centre"]


def test_sensitivity_map_shapes_and_patch_locality(unet, alphas_cumprod):
    n = noise(2)
    r = E.sensitivity_map(unet, alphas_cumprod, n, 4, grid=2, num_inference_steps=STEPS,
                          generator=torch.Generator().manual_seed(0), progress=False)
    assert r["positions"] == [(0, 0), (4, 0), (0, 4), (4, 4)]
    assert r["map"].shape == (2, 2) and r["pixel_map"].shape == (8, 8)
    torch.testing.assert_close(r["map"].flatten(), r["output_distance"].mean(1))
    torch.testing.assert_close(r["pixel_map"][0, 0], r["map"][0, 0])  # patches tile: each pixel has one
    changed = (r["variants"][3] != n)
    assert not changed[..., :4, :].any() and not changed[..., :, :4].any()


def test_sampler_sweep_same_and_fresh_noise(unet, alphas_cumprod):
    settings = [(4, 0.0), (4, 1.0), (2, 0.0)]
    r = E.sampler_sweep(unet, alphas_cumprod, noise(2), [0.3], settings, generator=torch.Generator().manual_seed(0),
                        progress=False)
    assert list(r) == settings
    assert r[(4, 0.0)]["same_noise_distance"].abs().max() == 0
    assert r[(4, 0.0)]["fresh_z_distance"].abs().max() == 0  # DDIM: nothing random after x_T
    assert (r[(4, 1.0)]["fresh_z_distance"] > 0).all()       # DDPM-like: new z_t, new image
    assert (r[(2, 0.0)]["same_noise_distance"] > 0).all()
    torch.testing.assert_close(r[(4, 1.0)]["input_distance"], r[(2, 0.0)]["input_distance"])  # same n_1, z


# --- noise levels (notebook 04) ---------------------------------------------------------------------------

def test_pick_examples():
    labels = torch.tensor([3, 1, 3, 0, 1])
    assert E.pick_examples(labels, [0, 1, 3]) == [3, 1, 0]


def test_reconstruct_from_levels_batches_every_level(unet, alphas_cumprod):
    x0 = noise(3).clamp(-1, 1)
    strengths = [0.25, 0.5, 1.0]
    r = E.reconstruct_from_levels(unet, x0, strengths, alphas_cumprod, STEPS, n_seeds=2,
                                  generator=torch.Generator().manual_seed(0), progress=False)
    assert r["x_t"].shape == r["recon"].shape == (2, 3, 3, 1, 8, 8)
    assert r["start_index"].tolist() == [3, 2, 0] and r["timesteps"].tolist() == [0, 250, 750]
    assert not torch.allclose(r["x_t"][0], r["x_t"][1])  # each seed its own forward noise
    # a row in the shared batch equals that row denoised alone from its own start
    alone = F.sample(unet, r["x_t"][1, 1], alphas_cumprod, STEPS, start_index=2, progress=False)
    torch.testing.assert_close(r["recon"][1, 1], alone, atol=1e-5, rtol=1e-4)


def test_reconstruction_metrics_bands():
    x0 = noise(2).clamp(-1, 1)
    recon = torch.stack([torch.stack([x0, x0 + 0.1])])  # (R=1, K=2, N=2, ...)
    m = E.reconstruction_metrics(x0, recon, sigma=1.0)
    assert set(m) == {"distance", "psnr", "low", "high"} and m["distance"].shape == (1, 2, 2)
    assert m["distance"][0, 0].abs().max() == 0 and torch.isinf(m["psnr"][0, 0]).all()
    # a constant shift is pure low frequency: all of it lands in the coarse band
    torch.testing.assert_close(m["low"][0, 1], torch.full((2,), 0.8))
    assert m["high"][0, 1].abs().max() < 1e-5


def test_class_change():
    pred = torch.tensor([[[1, 2]], [[1, 5]], [[7, 2]]]).permute(1, 0, 2)  # (R=1, K=3, N=2)
    out = E.class_change(pred, torch.tensor([1, 2]), [0.1, 0.5, 0.9])
    torch.testing.assert_close(out["same_fraction"], torch.tensor([1.0, 0.5, 0.5]))
    assert out["first_change"][0, 0] == pytest.approx(0.9) and out["first_change"][0, 1] == pytest.approx(0.5)
    assert math.isnan(float(E.class_change(pred[:, :1], torch.tensor([1, 2]), [0.1])["first_change"][0, 0]))


def test_plots_draw(unet, alphas_cumprod):
    import matplotlib.pyplot as plt

    sweep = E.mix_sweep(unet, alphas_cumprod, noise(2), [0.1, 1.0], 2, progress=False,
                        generator=torch.Generator().manual_seed(0))
    fig = figures.plot_similarity({"DDIM": sweep}, "test", unrelated=sweep)
    assert fig.axes[0].get_xlabel().startswith("input distance")
    x0 = noise(2).clamp(-1, 1)
    r = E.reconstruct_from_levels(unet, x0, [0.2, 0.8], alphas_cumprod, 2, progress=False,
                                  generator=torch.Generator().manual_seed(0))
    fig2 = figures.plot_reconstruction(r, E.reconstruction_metrics(x0, r["recon"], 1.0), alphas_cumprod)
    assert len(fig2.axes) == 4
    plt.close("all")


def test_similarity_plots_on_shared_axes_show_every_point():
    """The second plot on a shared y axis has larger distances: its points must not fall off the top."""
    import matplotlib.pyplot as plt

    def sweep(scale):
        d = torch.tensor([[1.0, 1.2], [4.0, 4.4]])
        return {"input_distance": d, "output_distance": scale * d}
    fig, axes = plt.subplots(1, 2, sharey=True)
    figures.plot_similarity({"small": sweep(0.5)}, "a", ax=axes[0])
    figures.plot_similarity({"large": sweep(2.0)}, "b", ax=axes[1])
    for ax in axes:  # the y axis is shared, so both reach the second plot's 8.8
        assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 8.8, ax.get_ylim()
        assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] >= 4.4
    plt.close(fig)


def test_unrelated_band_distances():
    x0 = torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])  # two flat images, 1 apart at each pixel
    d = E.unrelated_band_distances(x0, sigma=1.0)
    assert float(d["distance"]) == pytest.approx(8.0) and float(d["low"]) == pytest.approx(8.0)
    assert float(d["high"]) == pytest.approx(0.0, abs=1e-5)
    assert math.isnan(float(E.unrelated_band_distances(x0[:1], 1.0)["distance"]))


def test_level_reports_and_grid(unet, alphas_cumprod):
    import matplotlib.pyplot as plt

    x0 = noise(2).clamp(-1, 1)
    r = E.reconstruct_from_levels(unet, x0, [0.25, 1.0], alphas_cumprod, STEPS, n_seeds=2, progress=False,
                                  generator=torch.Generator().manual_seed(0))
    m = E.reconstruction_metrics(x0, r["recon"], 1.0)
    table = E.level_table(r, m, E.unrelated_band_distances(x0, 1.0), alphas_cumprod)
    assert len(table.splitlines()) == 1 + 2 + 1 and "two different images" in table
    change = E.class_change(torch.tensor([[[1, 2], [1, 5]], [[1, 2], [7, 5]]]), torch.tensor([1, 2]), [0.25, 1.0])
    report = E.class_change_report(["a", "b"], change, r, alphas_cumprod)
    assert "a: first another digit at strength never, 1" in report and "fewer than half" in report
    fig = figures.plot_level_grid(x0, r, ["a", "b"])
    (ax,) = fig.axes  # one table: rows x_t of the first image, then each image; columns x_0 and each strength
    side = 3 * (x0.shape[-1] + 2) + 2  # 3 cells of 8 px, 2 px of padding around each
    assert ax.images[0].get_array().shape[:2] == (side, side)
    assert len(ax.get_xticklabels()) == 3 and ax.get_xticklabels()[0].get_text() == "$x_0$"
    assert [t.get_text() for t in ax.get_yticklabels()][1:] == ["a", "b"]
    plt.close("all")
