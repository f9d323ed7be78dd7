"""Activation maximization: known optima, locality of gradients, batching, reproducibility, the repetition score."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import actmax, am_study, repetition, stats, verdict
from helpers.models import build_model, record


class Linear(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 32 * 32, k)
        nn.init.normal_(self.fc.weight, 0, 0.01)

    def forward(self, x):
        return self.fc(x.flatten(1))


class LeftHalf(nn.Module):
    """A model whose every unit ignores the right half of the image."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 32 * 16, 4)

    def forward(self, x):
        return torch.tanh(self.fc(x[..., :16].flatten(1)))


def test_linear_model_converges_to_weight_direction():
    """max w.x - l2 * |x - 0.5|^2 has its optimum at x - 0.5 = w / (2 l2), inside the [0, 1] box here."""
    model = Linear()
    result = actmax.render(model, actmax.class_logit([0, 1, 2]), "pixel", steps=300, lr=0.05, transforms=[],
                           l2=1.0, progress=False)
    delta = (result.images - 0.5).flatten(1)
    cosine = torch.nn.functional.cosine_similarity(delta, model.fc.weight.detach(), dim=1)
    assert (cosine > 0.99).all(), cosine
    assert torch.allclose(delta, model.fc.weight.detach() / 2, atol=2e-3)
    assert (result.history[-1] > result.history[0]).all()


def test_ignored_half_is_left_unchanged():
    result = actmax.render(LeftHalf(), actmax.class_logit([0, 1, 2, 3]), "pixel", steps=30, transforms=[],
                           progress=False)
    assert torch.equal(result.images[..., 16:], result.start[..., 16:])
    assert (result.images[..., :16] - result.start[..., :16]).abs().max() > 0.1


def test_objectives_on_each_kind_of_layer_rise():
    torch.manual_seed(0)
    cnn = build_model("cnn", width=1 / 16).eval()
    mlp = build_model("mlp", depth=2, width=32, resolution=32).eval()
    cases = [(cnn, actmax.unit("features.8", [0, 1])),          # a conv layer (BN, pre-ReLU): centre neuron
             (cnn, actmax.layer_objective(cnn, "features.9", [2, 3])),  # a conv ReLU: whole channel, pre-ReLU
             (cnn, actmax.layer_objective(cnn, "hidden", [5, 6])),  # ReLU -> its pre-activation, classifier.3
             (cnn, actmax.direction("hidden", torch.randn(2, 256))),
             (mlp, actmax.class_logit([7, 8])),
             (mlp, actmax.unit("blocks.1.block.1", [3, 4]))]   # a GELU inside a block
    for model, objective in cases:
        r = actmax.render(model, objective, "fft", steps=40, lr=0.05, transforms=[], progress=False)
        assert r.images.shape == (2, 3, 32, 32) and 0 <= r.images.min() and r.images.max() <= 1
        assert (r.history[-5:].mean(0) > r.history[:5].mean(0)).all(), objective.name


def test_relu_layers_are_maximized_before_the_relu():
    """A ReLU unit that is off at the starting image has no gradient; its pre-activation always has one."""
    cnn = build_model("cnn", width=1 / 16).eval()
    assert actmax.preactivation(cnn, "hidden") == "classifier.3"
    assert actmax.preactivation(cnn, "features.16") == "features.15"
    assert actmax.layer_objective(cnn, "features.16", [0]).layer == "features.15"
    mlp = build_model("mlp", depth=2, width=8, resolution=32)
    assert actmax.preactivation(mlp, "hidden") == "residual.1"  # not a ReLU: unchanged


def test_same_seed_same_images():
    model = build_model("mlp", depth=1, width=32, resolution=32).eval()
    a = actmax.render(model, actmax.unit("hidden", [0, 1, 2]), steps=10, seed=4, progress=False)
    b = actmax.render(model, actmax.unit("hidden", [0, 1, 2]), steps=10, seed=4, progress=False)
    c = actmax.render(model, actmax.unit("hidden", [0, 1, 2]), steps=10, seed=5, progress=False)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_bad_parameterization():
    with pytest.raises(ValueError, match="parameterization='dct'"):
        actmax.make_image("dct", 1)


def test_transforms_keep_size_and_move_pixels():
    x = torch.rand(5, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    for t in actmax.standard_transforms():
        y = t(x, g)
        assert y.shape == x.shape and not torch.equal(x, y)


def test_color_matrix_is_a_covariance_root(cifar_test):
    root = actmax.color_correlation_sqrt(cifar_test[0][:2000])
    cov = torch.cov(cifar_test[0][:2000].permute(1, 0, 2, 3).reshape(3, -1).double() / 255).float()
    product = root @ root.T
    assert torch.allclose(product / product[0, 0], cov / cov[0, 0], atol=1e-4)


def test_repetition_score_separates_periodic_from_random():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    stripes = (0.5 + 0.4 * torch.sin(2 * math.pi * xx / 6)).expand(3, 32, 32)
    checks = (0.5 + 0.4 * torch.sin(2 * math.pi * xx / 8) * torch.sin(2 * math.pi * yy / 8)).expand(3, 32, 32)
    torch.manual_seed(0)
    noise = torch.rand(3, 32, 32)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 44, 44), 13, stride=1)[0]
    score, lag = repetition.repetition_score(torch.stack([stripes, checks, noise, smooth]))
    assert score[0] > 0.9 and lag[0, 1].abs() % 6 == 0  # stripes also repeat along themselves (dx = 0)
    assert score[1] > 0.9 and (lag[1].abs() % 8 == 0).all()
    assert score[2] < 0.3 and score[3] < 0.3


def noisy_periodic(snr, n=24, seed=0):
    """Sinusoidal gratings (random period 4-8 px and orientation) plus white noise, signal-to-noise ratio ``snr``
    (standard deviations); snr=0 is pure noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    period = 4 + 4 * torch.rand(n, generator=g)
    angle = math.pi * torch.rand(n, generator=g)
    phase = (xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]) / period[:, None, None]
    signal = torch.sin(2 * math.pi * phase) / math.sqrt(0.5)  # unit standard deviation
    noise = torch.randn(n, 32, 32, generator=g)
    return (0.5 + 0.1 * (snr * signal + noise)).clamp(0, 1)[:, None].expand(n, 3, 32, 32)


@pytest.mark.parametrize("measure", [repetition.repetition_score, repetition.spectral_score])
def test_repetition_measures_rise_with_signal_to_noise_and_stay_low_on_noise(measure):
    def score(images):
        out = measure(images)
        return (out[0] if isinstance(out, tuple) else out).median().item()
    levels = [score(noisy_periodic(snr)) for snr in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in zip(levels, levels[1:])), levels
    assert levels[0] < 0.2 and levels[-1] > 0.5, levels


def test_spectral_score_of_a_plane_wave_and_of_a_smooth_blob():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    wave = (0.5 + 0.4 * torch.sin(2 * math.pi * xx / 8)).expand(1, 3, 32, 32)
    blob = torch.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / 60).expand(1, 3, 32, 32)
    assert repetition.spectral_score(wave).item() > 0.5
    assert repetition.spectral_score(blob).item() < repetition.spectral_score(wave).item()


def test_success_gate_rejects_an_image_that_does_not_drive_its_target():
    natural = torch.randn(1000, 3)  # three targets on natural images
    success, threshold = verdict.am_success(torch.tensor([5.0, 0.0, 2.5]), natural)
    assert success.tolist() == [True, False, True] and (threshold > 2).all() and (threshold < 3).all()


def test_the_motif_measure_scores_its_known_answers(cifar_test):
    natural = cifar_test[0][:32].float() / 255
    color = actmax.color_correlation_sqrt(cifar_test[0][:2000])
    start = actmax.make_image("fft", 32, seed=0, color_matrix=color)().detach()
    controls = repetition.measure_controls(natural, start)
    scores = {name: repetition.motif_score(x) for name, (x, _) in controls.items()}
    medians = {name: float(v.median()) for name, v in scores.items()}
    passed, reason = verdict.measure_controls_passed(medians, {name: e for name, (_, e) in controls.items()})
    assert passed, reason
    # the stamped motif beats its own surrogate image by image, which the spectral measure cannot tell apart
    stamped, surrogate = scores["stamped motif"], scores["stamped, phase-randomized"]
    assert (stamped > surrogate + 0.1).float().mean() > 0.9
    spectral = [repetition.spectral_score(controls[k][0]).median()
                for k in ("stamped motif", "stamped, phase-randomized")]
    assert abs(spectral[0] - spectral[1]) < 0.1
    assert torch.equal(repetition.motif_score(natural, seed=3), repetition.motif_score(natural, seed=3))


def test_saturated_share():
    images = torch.cat([torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)])
    images[1, 0] = 1.0
    assert repetition.saturated_share(images).tolist() == pytest.approx([1.0, 1 / 3])


def test_effect_sizes():
    assert stats.cliffs_delta([3, 4, 5], [0, 1, 2]) == 1 and stats.cliffs_delta([0, 1], [0, 1]) == 0
    g = torch.Generator().manual_seed(0)
    high, low = torch.randn(40, generator=g) + 1.5, torch.randn(40, generator=g)
    effect, reps = stats.effect_over_null(high, low, replicates=300)
    assert effect["low"] > 0.3 and effect["p"] < 1e-4 and effect["low"] < effect["delta"] < effect["high"]
    null_effect, null_reps = stats.effect_over_null(low, torch.randn(40, generator=g), replicates=300)
    assert null_effect["low"] < 0 < null_effect["high"] and null_effect["p"] > 0.01
    pos = stats.effect_ratio(null_reps, reps, null_effect["delta"], effect["delta"])
    assert pos["low"] < pos["value"] < pos["high"] and pos["high"] < 0.5
    # A reference effect that may be 0 leaves the share undefined, not an interval of ±1e6.
    undefined = stats.effect_ratio(reps, null_reps, effect["delta"], null_effect["delta"])
    assert all(math.isnan(v) for v in undefined.values())


def test_objective_values_are_every_target_on_every_image():
    torch.manual_seed(0)
    cnn = build_model("cnn", width=1 / 16).eval()
    images = torch.rand(5, 3, 32, 32)
    values = am_study.objective_values(cnn, actmax.class_logit([3, 1]), images)
    assert torch.allclose(values, cnn(images).detach()[:, [3, 1]], atol=1e-5)
    objective = actmax.unit("features.8", [0, 2])
    values = am_study.objective_values(cnn, objective, images)
    with torch.no_grad(), record(cnn, ["features.8"]) as acts:
        cnn(images)
    a = acts["features.8"]
    assert torch.allclose(values, a[:, [0, 2], a.shape[2] // 2, a.shape[3] // 2], atol=1e-5)  # the centre position
    assert values.shape == (5, 2)


def test_rendering_a_cnn_with_folded_batchnorm_sees_the_same_objective(vgg_with_learned_statistics):
    # render() runs the CNN with its BatchNorms folded into the convolutions; the first step's objective (computed
    # at the starting images) must be what the original network gives, to rounding.
    from unittest import mock
    vgg = vgg_with_learned_statistics
    objective = actmax.layer_objective(vgg, "features.9", [0, 1, 2])  # a conv ReLU: its channels, before the ReLU
    folded = actmax.render(vgg, objective, steps=1, progress=False)
    with mock.patch.object(actmax.render_loop, "fold_batchnorm", lambda m: m):
        original = actmax.render(vgg, objective, steps=1, progress=False)
    assert torch.allclose(folded.history, original.history, rtol=1e-4, atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in vgg.modules()) and not vgg.training


def test_the_motif_measure_responds_monotonically_to_a_known_dose(cifar_test):
    """Along contrast, copies, size and a tiling's contrast the primary measure's median never falls and rises
    clearly; on textured backgrounds it never falls (``verdict.dose_response_monotone``)."""
    from helpers import am_study
    from helpers.data import to_float
    natural = to_float(cifar_test[0][:32])
    g = torch.Generator().manual_seed(0)
    doses = am_study.dose_table(repetition.dose_response_images(
        {"natural, phase-randomized": repetition.phase_randomized(natural[:12], g)}, n=12))
    passed, reason = am_study.dose_verdict(doses)
    assert passed, reason
    medians = doses.groupby(["factor", "level"]).median(numeric_only=True)
    # the companion keeps exact tilings, which the primary measure partly subtracts
    assert medians.loc[("tiled", 1.0), "periodic"] > medians.loc[("tiled", 1.0), "motif"] + 0.2
    assert abs(medians.loc[("contrast", 0.0), "periodic"]) < 0.05  # flat noise: about 0


def test_a_hierarchical_effect_keeps_replicates_that_drew_no_image_in_place():
    """A side with one model seed is empty in the replicates that did not draw it: those δs are NaN, in place, so two
    families' replicates stay aligned, and the interval and p read the others."""
    trained = (torch.rand(40).numpy() + 1, np.repeat([0, 1], 20), np.zeros(40, int))
    null = (torch.rand(20).numpy(), np.zeros(20, int), np.zeros(20, int))  # seed 1 has no null images
    effect, reps = stats.clustered_effect(trained, null, replicates=200, seed=0)
    assert len(reps) == 200 and reps.isnan().any() and not reps.isnan().all()
    assert effect["low"] == effect["low"] and effect["low"] > 0.9
    ratio = stats.effect_ratio(reps, reps, effect["delta"], effect["delta"])
    assert abs(ratio["low"] - 1) < 1e-9 and abs(ratio["high"] - 1) < 1e-9


def test_the_periodic_companion_keeps_a_tiling_and_reads_noise_as_none():
    g = torch.Generator().manual_seed(0)
    tiled = torch.rand(8, 3, 8, 8, generator=g).repeat(1, 1, 4, 4)
    noise = 0.5 + 0.1 * torch.randn(8, 3, 32, 32, generator=g)
    surrogate = repetition.radial_surrogate(tiled, g)
    assert surrogate.shape == tiled.shape and (surrogate >= 0).all() and (surrogate <= 1).all()
    assert repetition.periodic_motif_score(tiled).median() > 0.4
    assert abs(repetition.periodic_motif_score(noise).median()) < 0.05
    assert repetition.motif_score(tiled).median() < repetition.periodic_motif_score(tiled).median() - 0.2
