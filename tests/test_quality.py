"""src.quality: the Frechet distance against closed forms, and the classifier's features, accuracy and diversity."""

import math

import pytest
import torch

from src import quality as Q


def _digit_classifier():
    from src.classifier import DigitClassifier

    torch.manual_seed(0)
    return DigitClassifier().eval()


def _random_spd(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_identical_sets_are_at_distance_zero():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    assert abs(Q.frechet_distance(x, x)) < 1e-8
    fit = (torch.zeros(4, dtype=torch.float64), _random_spd(4, 1))
    assert abs(Q.frechet_distance(fit, fit)) < 1e-10


def test_diagonal_gaussians_give_the_closed_form():
    """Diagonal Sigma: tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt(s1) - sqrt(s2))^2."""
    g = torch.Generator().manual_seed(2)
    mu1, mu2 = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    s1 = torch.rand(8, generator=g, dtype=torch.float64) + 0.1
    s2 = torch.rand(8, generator=g, dtype=torch.float64) * 3 + 0.1
    expected = float((mu1 - mu2).square().sum() + (s1.sqrt() - s2.sqrt()).square().sum())
    got = Q.frechet_distance((mu1, torch.diag(s1)), (mu2, torch.diag(s2)))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_full_covariances_give_the_closed_form():
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), with tr (S1 S2)^(1/2) from the eigenvalues of the
    non-symmetric product S1 S2 (another route than quality.py's symmetric one); and S2 = c S1 gives
    (1 - sqrt(c))^2 tr S1."""
    s1, s2 = _random_spd(6, 3), _random_spd(6, 4)
    mu1, mu2 = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    cross = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    expected = float(6 + s1.trace() + s2.trace() - 2 * cross)
    assert Q.frechet_distance((mu1, s1), (mu2, s2)) == pytest.approx(expected, rel=1e-9)
    assert Q.frechet_distance((mu1, s1), (mu1, 4 * s1)) == pytest.approx(float(s1.trace()), rel=1e-9)


def test_fitted_features_approach_the_population_value():
    """Samples of two known Gaussians: the FD of their fits is near the closed form (and above it: FD is
    biased upwards by the estimation noise)."""
    g = torch.Generator().manual_seed(5)
    n, d = 20000, 4
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = 1.0 + 2.0 * torch.randn(n, d, generator=g, dtype=torch.float64)  # mu = 1, Sigma = 4 I
    expected = d * 1.0 + d * (1 - 2) ** 2  # ||mu||^2 + sum (sqrt(1) - sqrt(4))^2 = 8
    assert Q.frechet_distance(a, b) == pytest.approx(expected, abs=0.1)


def test_torchmetrics_gives_the_same_number():
    """torchmetrics' FrechetInceptionDistance with a custom feature module (here: features pass through)."""
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    g = torch.Generator().manual_seed(6)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64)
    b = 0.5 + torch.randn(500, 6, generator=g, dtype=torch.float64) @ _random_spd(6, 7)
    fid = fid_module.FrechetInceptionDistance(feature=torch.nn.Identity(), input_img_size=(6,), normalize=True)
    fid.update(a, real=True)
    fid.update(b, real=False)
    assert Q.frechet_distance(b, a) == pytest.approx(float(fid.compute()), rel=1e-6)


def test_features_are_the_penultimate_layer_after_relu():
    classifier = _digit_classifier()
    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features, logits = Q.classifier_features(classifier, x, batch_size=3)
    assert features.shape == (7, Q.FEATURE_DIM) and (features >= 0).all()
    with torch.no_grad():
        torch.testing.assert_close(logits, classifier(x))  # eval mode: the dropout is the identity
        hooked = []
        handle = classifier.net[-3].register_forward_hook(lambda m, i, o: hooked.append(o))
        classifier(x)
        handle.remove()
    torch.testing.assert_close(features, hooked[0])


def test_accuracy_and_within_class_diversity_on_hand_made_points():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [5.0, 0.0]])
    assert Q.accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.5
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])  # class 2 has one sample: skipped
    expected = (5.0 + (1 + 1 + math.sqrt(2)) / 3) / 2
    assert Q.within_class_diversity(features, labels) == pytest.approx(expected)


def test_real_reference_floor_set_matches_the_class_counts_and_is_disjoint_from_the_reference():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(400, 8, generator=g).relu()
    labels = torch.arange(400) % 10
    reference = Q.RealReference(features, labels)
    asked = torch.tensor([0, 0, 0, 1, 1, 7] * 5)
    chosen = reference.floor_set(torch.bincount(asked, minlength=10).tolist())
    assert torch.bincount(labels[chosen], minlength=10).tolist() == torch.bincount(asked, minlength=10).tolist()
    at = reference.at(asked)
    assert reference.at(asked.flip(0)) is at  # the same counts: computed once
    rest = torch.ones(400, dtype=torch.bool)
    rest[chosen] = False
    assert Q.frechet_distance(features[rest], at["fit"]) == pytest.approx(0.0, abs=1e-9)
    assert at["floor"] == pytest.approx(Q.frechet_distance(features[chosen], features[rest]))
    small, large = reference.at(torch.arange(20) % 10), reference.at(torch.arange(200) % 10)
    assert small["floor"] > large["floor"]  # the bias shrinks with n
    with pytest.raises(ValueError, match="at most half"):
        reference.at(torch.zeros(21, dtype=torch.long))


def test_score_samples_reports_every_number():
    classifier = _digit_classifier()
    g = torch.Generator().manual_seed(1)
    real = torch.rand(60, 1, 28, 28, generator=g) * 2 - 1
    reference = Q.RealReference.from_images(classifier, real, torch.arange(60) % 10)
    report = Q.score_samples(classifier, reference, real[:20], torch.arange(20) % 10)
    assert set(report) == {"n", "fd", "fd_floor", "accuracy", "diversity", "diversity_real",
                           "fd_std", "accuracy_std", "diversity_std", "fd_floor_std"}
    assert report["n"] == 20 and report["fd"] >= 0 and 0 <= report["accuracy"] <= 1
    assert all(report[k] >= 0 for k in ("fd_std", "accuracy_std", "diversity_std", "fd_floor_std"))
    assert set(Q.score_samples(classifier, reference, real[:20], torch.arange(20) % 10, spread=False)) == {
        "n", "fd", "fd_floor", "accuracy", "diversity", "diversity_real"}


def test_half_sample_spread_is_the_standard_error_of_a_mean():
    """For accuracy (a mean of 0/1), the spread over random halves is close to sqrt(p (1 - p) / n)."""
    g = torch.Generator().manual_seed(3)
    n = 400
    labels = torch.arange(n) % 4
    right = torch.rand(n, generator=g) < 0.8
    logits = torch.nn.functional.one_hot(torch.where(right, labels, (labels + 1) % 4), 4).float()
    features = torch.randn(n, 3, generator=g)
    spread = Q.half_sample_spread(features, logits, labels, Q.gaussian_fit(features), repeats=200)
    p = float(right.float().mean())
    assert spread["accuracy_std"] == pytest.approx((p * (1 - p) / n) ** 0.5, rel=0.25)


def test_the_floor_spread_is_over_independent_draws():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(600, 4, generator=g)
    reference = Q.RealReference(features, torch.arange(600) % 10)
    at = reference.at(torch.arange(100) % 10, draws=6)
    floors = []
    for k in range(6):
        chosen = reference.floor_set([10] * 10, seed=k)
        rest = torch.ones(600, dtype=torch.bool)
        rest[chosen] = False
        floors.append(Q.frechet_distance(features[chosen], features[rest]))
    assert at["floor"] == pytest.approx(floors[0]) and at["floor_std"] == pytest.approx(float(torch.tensor(floors).std()))


def test_sweep_settings_and_the_flow_sampler():
    settings = Q.standard_settings(("ddim", "ddpm"), (4, 10), (1.0, 3.0), spacing_steps=6, ddpm_1000_n=64)
    assert {"sampler": "ddpm", "steps": 1000, "guidance_scale": 3.0, "timestep_spacing": None, "n": 64} in settings
    assert len(settings) == 2 * 2 * 2 + 2 + 2 * 2
    flow = Q.standard_settings((Q.FLOW_SAMPLER,), (4, 10), (1.0,))
    assert [s["steps"] for s in flow] == [4, 10]  # no spacings, no DDPM row
