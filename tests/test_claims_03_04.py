"""The functions behind notebooks 03 and 04's claims (src/experiments.py, src/figures.py sections 4-5), and the
default full-mode claims of the cheapest sections, computed on the bundled model as the notebooks compute them."""

import math

import matplotlib
import pytest
import torch

from src import experiments as E
from src import figures
from src import functions as F
from src.files import PROJECT_ROOT

matplotlib.use("Agg")
STEPS = 4


def noise(n=3, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# --- the numbers behind the sentences --------------------------------------------------------------

def test_spread_ignores_nan_and_counts():
    s = E.spread(torch.tensor([1.0, 2.0, 3.0, float("nan"), 4.0]))
    assert s["n"] == 4 and s["median"] == pytest.approx(2.5) and s["min"] == 1 and s["max"] == 4
    assert s["q25"] == pytest.approx(1.75) and s["q75"] == pytest.approx(3.25)
    assert math.isnan(E.spread(torch.tensor([float("nan")]))["median"]) and E.spread(torch.tensor([]))["n"] == 0


def test_distance_ratio_median_mean_and_ratio_of_means():
    result = {"input_distance": torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]),
              "output_distance": torch.tensor([[0.5, 0.8, 9.0], [1.0, 1.0, 1.0]])}
    r = E.distance_ratio(result)
    torch.testing.assert_close(r["ratio"], result["output_distance"] / result["input_distance"])
    assert float(r["median"][0]) == pytest.approx(0.8) and float(r["mean"][0]) == pytest.approx(10.3 / 3)
    assert float(r["of_means"][1]) == pytest.approx(0.5)


def test_rank_correlation():
    x = torch.arange(10.0)
    assert E.rank_correlation(x, x**3) == pytest.approx(1.0)  # any rising function: 1
    assert E.rank_correlation(x, -x) == pytest.approx(-1.0)
    result = {"input_distance": torch.stack([x, x], 1), "output_distance": torch.stack([x.exp(), -x], 1)}
    torch.testing.assert_close(E.rank_correlation_per_seed(result), torch.tensor([1.0, -1.0]))


def test_first_crossing_interpolates_from_zero_and_reports_never():
    values = torch.tensor([[2.0, 0.0, 1.0], [6.0, 1.0, 3.0]])  # (K=2, N=3), knob 0.1 and 0.5
    out = E.first_crossing(values, [0.1, 0.5], 4.0)
    assert float(out[0]) == pytest.approx(0.1 + 0.5 * 0.4)  # between 2 at 0.1 and 6 at 0.5
    assert math.isnan(float(out[1])) and math.isnan(float(out[2]))
    assert float(E.first_crossing(values, [0.1, 0.5], 1.0)[0]) == pytest.approx(0.05)  # from (0, 0)


def test_patch_corner():
    assert E.patch_corner(28, 8, "centre") == (10, 10) and E.patch_corner(28, 14, "corner") == (0, 0)
    with pytest.raises(ValueError, match="centre"):
        E.patch_corner(28, 8, "middle")


def test_base_is_reused_not_recomputed(unet, alphas_cumprod):
    n = noise()
    sweep = E.mix_sweep(unet, alphas_cumprod, n, [0.3], STEPS, progress=False,
                        generator=torch.Generator().manual_seed(0))
    fake = torch.full_like(sweep["base"], 0.5)  # a base from elsewhere is taken as given
    r = E.sensitivity_map(unet, alphas_cumprod, n, 4, 2, STEPS, progress=False, base=fake,
                          generator=torch.Generator().manual_seed(1))
    assert torch.equal(r["base"], fake)
    again = E.sensitivity_map(unet, alphas_cumprod, n, 4, 2, STEPS, progress=False, base=sweep["base"],
                              generator=torch.Generator().manual_seed(1))
    alone = E.sensitivity_map(unet, alphas_cumprod, n, 4, 2, STEPS, progress=False,
                              generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again["output_distance"], alone["output_distance"], atol=1e-4, rtol=1e-4)


def test_sampler_sweep_reuses_a_known_curve_and_checks_its_mix_factors(unet, alphas_cumprod):
    n, z = noise(), noise(seed=1)
    wide = E.mix_sweep(unet, alphas_cumprod, n, [0.1, 0.3, 0.5], STEPS, other=z, progress=False)
    known = {(STEPS, 0.0): E.take(wide, [0, 2])}
    r = E.sampler_sweep(unet, alphas_cumprod, n, [0.1, 0.5], [(STEPS, 0.0), (STEPS, 1.0)], other=z, known=known,
                        generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(r[(STEPS, 0.0)]["images"], wide["images"][[0, 2]])
    torch.testing.assert_close(r[(STEPS, 1.0)]["input_distance"], wide["input_distance"][[0, 2]])
    with pytest.raises(ValueError, match="mix factors"):
        E.sampler_sweep(unet, alphas_cumprod, n, [0.1, 0.3], [(STEPS, 0.0)], other=z, known=known, progress=False)


def test_step_count_distances(unet, alphas_cumprod):
    n = noise()
    r = E.step_count_distances(unet, alphas_cumprod, n, [4, 2, 8], progress=False)
    assert r["step_counts"] == [2, 4, 8] and r["distance"].shape == (3, 3)
    assert r["distance"][-1].abs().max() == 0 and (r["distance"][0] > 0).all()
    alone = F.sample(unet, n, alphas_cumprod, 4, progress=False)
    torch.testing.assert_close(r["images"][4], alone, atol=1e-5, rtol=1e-4)


def test_p2_stages_and_stage_summary(unet, alphas_cumprod):
    assert [E.p2_stage(v) for v in (1e-3, 0.5, 2.0)] == ["coarse", "content", "clean-up"]
    assert E.p2_stage(1e-2) == "content" and E.p2_stage(1.0) == "clean-up"  # each edge starts the next stage
    x0 = noise(2).clamp(-1, 1)
    strengths = [0.1, 0.7, 0.9]  # at 4 steps: t = 0 (clean-up), 500 (content), 750 (coarse)
    r = E.reconstruct_from_levels(unet, x0, strengths, alphas_cumprod, STEPS, n_seeds=2, progress=False,
                                  generator=torch.Generator().manual_seed(0))
    m = E.reconstruction_metrics(x0, r["recon"], 1.0)
    change = E.class_change(torch.zeros(2, 3, 2, dtype=torch.long), torch.tensor([0, 1]), strengths)
    st = E.stage_summary(r, m, E.unrelated_band_distances(x0, 1.0), alphas_cumprod, change)
    assert st["n"] == 4 and [st[s]["levels"] for s in ("clean-up", "content", "coarse")] == [[0], [1], [2]]
    assert st["coarse"]["strengths"] == [0.9] and st["content"]["same"].tolist() == [0.5]
    assert E.stage_summary(r, m, E.unrelated_band_distances(x0, 1.0), alphas_cumprod)["coarse"]["same"] is None


def test_new_plots_draw(unet, alphas_cumprod):
    import matplotlib.pyplot as plt

    n = noise()
    sweep = E.mix_sweep(unet, alphas_cumprod, n, [0.1, 0.5, 1.0], 2, progress=False,
                        generator=torch.Generator().manual_seed(0))
    fig = figures.plot_mix_sweep(sweep, "DDIM", unrelated=sweep)
    assert len(fig.axes) == 2 and "n = 3 seeds" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert fig.axes[1].get_yscale() == "log"
    steps = E.step_count_distances(unet, alphas_cumprod, n, [2, 4], progress=False)
    assert figures.plot_step_counts(steps, sweep["unrelated_output"]).axes[0].get_xscale() == "log"
    frames = figures.pair_frames(n[:2], sweep["base"][:2])
    assert frames[0].shape == (1, 2 * (8 + 2) + 2, 8 + 4)  # noise above its image
    fig, ax = plt.subplots()
    ax.set_xlim(3, -8)
    handles = figures.shade_p2_regimes(ax)
    assert [h.get_label().split()[1] for h in handles] == ["coarse", "content", "clean-up"]
    assert ax.get_xlim() == (3, -8) and {t.get_text() for t in ax.texts} == {"coarse", "content", "clean-up"}
    plt.close("all")


# --- the notebooks' default claims, at full settings, on the bundled model ---------------------------------

@pytest.fixture(scope="module")
def bundled(monkeypatch_module):
    if not (PROJECT_ROOT / "models" / "mnist-ddpm" / "config.json").exists():
        pytest.skip("the bundled model is not there")
    from src.course import load_config, load_model

    monkeypatch_module.delenv("COURSE_FAST", raising=False)  # full settings, as the committed notebooks
    cfg = load_config()
    return cfg, load_model(cfg)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_notebook_03_section_3_claims_hold_on_the_default_config(bundled):
    """Section 3 and answers (1), (2), (4) of notebook 03: one batched sweep of 8 seeds x 11 images, 25 steps."""
    cfg, model = bundled
    mix_factors = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0]
    g = torch.Generator().manual_seed(cfg["seed"])
    n1, z = model.noise(8, g), model.noise(8, g)
    sweep = E.mix_sweep(model.unet, model.alphas_cumprod, n1, mix_factors, min(cfg["num_inference_steps"], 25),
                        generator=g, other=z, progress=False)
    ratio = E.distance_ratio(sweep)
    small = [k for k, s in enumerate(mix_factors) if s <= 0.15]
    med, top = ratio["median"][small], ratio["ratio"][small].amax(0)
    assert (med < 1).all() and med.max() / med.min() < 1.5                       # typical seed: proportional, < 1
    assert top.max() > 2 and (ratio["mean"][small] > 1).all()                     # a few amplify, mean above 1
    assert ratio["ratio"][-1].max() < 1                                            # large changes compressed
    per_seed = E.rank_correlation_per_seed(sweep)
    assert E.rank_correlation(sweep["input_distance"], sweep["output_distance"]) > 0.8 and per_seed.min() > 0.8
    large = [k for k, s in enumerate(mix_factors) if s >= 0.7]
    assert (ratio["ratio"] < 1).float().mean() > 0.5 and (ratio["ratio"][large] < 1).all()
    s_half = E.first_crossing(sweep["output_distance"], mix_factors, 0.5 * sweep["unrelated_output"])
    assert 0.2 <= E.spread(s_half)["median"] <= 0.5


def test_notebook_04_clean_up_stage_claims_hold_on_the_default_config(bundled):
    """Notebook 04 at SNR > 1 (strengths 0.1 and 0.2: the cheap levels), 10 digits x 3 forward noises."""
    from src.course import classify, load_classifier, load_mnist

    cfg, model = bundled
    digits, labels = load_mnist("test")
    x0 = digits[E.pick_examples(labels, range(10))]
    levels = E.reconstruct_from_levels(model.unet, x0, [0.1, 0.2], model.alphas_cumprod, cfg["num_inference_steps"],
                                       3, generator=torch.Generator().manual_seed(cfg["seed"]), progress=False)
    metrics = E.reconstruction_metrics(x0, levels["recon"], 2.0)
    classifier = load_classifier()
    pred = classify(classifier, levels["recon"].flatten(0, 2)).view(levels["recon"].shape[:3])
    change = E.class_change(pred, classify(classifier, x0), [0.1, 0.2])
    up = E.stage_summary(levels, metrics, E.unrelated_band_distances(x0, 2.0), model.alphas_cumprod, change)["clean-up"]
    assert up["levels"] == [0, 1]
    assert (up["coarse"] < 0.15).all() and (up["fine"] > 2 * up["coarse"]).all()
    assert (up["same"] == 1).all()
