"""The shift-invariance measures on networks whose answer is known, and the rule on planted gains."""
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import invariance, verdict


def circular_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def random_mlp(side=16):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())


def white_noise(n=400, side=16):
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(1))


def test_on_white_noise_a_globally_pooled_circular_cnn_is_invariant_and_a_random_mlp_is_not():
    raw, gain = invariance.shift_invariance(circular_cnn(), white_noise(), ["1", "5"], shifts=(1, 4))
    assert all(abs(v) < 0.1 for v in raw["pixels"].values())  # white noise: a pixel and its neighbour are unrelated
    assert all(v > 0.99 for v in raw["5"].values()) and all(v > 0.9 for v in gain["5"].values())  # global pooling
    assert all(v < 0.2 for v in raw["1"].values())  # an unpooled conv map moves with the image: not invariant
    raw, gain = invariance.shift_invariance(random_mlp(), white_noise(), ["2", "4"], shifts=(1, 4))
    assert all(abs(v) < 0.15 for layer in ("2", "4") for v in raw[layer].values())


def test_shifts_are_circular_and_the_axis_is_checked():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(invariance.shift_images(x, 1, "x")[0, 0, 0], torch.tensor([3.0, 0.0, 1.0, 2.0]))
    assert torch.equal(invariance.shift_images(x, 4, "y"), x)
    with pytest.raises(ValueError, match="axis='z'"):
        invariance.shift_images(x, 1, "z")


def test_an_invariant_classifier_keeps_its_accuracy_under_shifts():
    model = nn.Sequential(circular_cnn(), nn.Linear(8, 3))
    images = (white_noise(60) * 255).to(torch.uint8)
    labels = model(images.float() / 255).argmax(1)  # its own predictions: accuracy 1 before any shift
    assert set(invariance.shifted_accuracy(model, images, labels, shifts=(0, 3)).values()) == {1.0}
    mlp = nn.Sequential(random_mlp(), nn.Linear(64, 3))
    labels = mlp(images.float() / 255).argmax(1)
    accuracy = invariance.shifted_accuracy(mlp, images, labels, shifts=(0, 3))
    assert accuracy[0] == 1.0 and accuracy[3] < 0.8


def test_weight_locality_reads_one_for_a_unit_inside_a_window_and_the_window_share_for_an_even_one():
    local = torch.zeros(3, 32, 32)
    local[:, 30:, 30:] = 1.0  # across the border: the windows wrap around
    local[:, :6, :6] = 1.0
    even = torch.ones(3, 32, 32)
    got = invariance.weight_locality(torch.stack([local, even]).flatten(1))
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx((8 / 32) ** 2)


def _gains(cnn, mlp, seeds=4, blocks=5, sd=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = [dict(family=family, model_seed=s, block=b, layer=layer,
                 gain=level + sd * torch.randn(1, generator=g).item())
            for family, level, layer in (("cnn", cnn, "features.16"), ("mlp", mlp, "residual.1"))
            for s in range(seeds) for b in range(blocks)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("mlp,expected", [(0.2, verdict.SUPPORTED), (0.0, verdict.NOT_SUPPORTED),
                                          (0.1, verdict.INCONCLUSIVE)])
def test_a_planted_gain_reads_as_planted(mlp, expected):
    m = invariance.pair_gains(_gains(0.2, mlp, sd=0.01 if mlp != 0.1 else 0.2),
                              {"cnn": "features.16", "mlp": "residual.1"}, replicates=300)
    assert abs(m["cnn"]["value"] - 0.2) < 0.1 and m["cnn"]["low"] > 0
    result, _ = verdict.shift_invariance_verdict(m["cnn"], m["position"])
    assert result == expected, (m, result)


def test_without_a_cnn_gain_the_rule_cannot_judge():
    m = invariance.pair_gains(_gains(0.0, 0.2), {"cnn": "features.16", "mlp": "residual.1"}, replicates=300)
    assert m["position"]["value"] != m["position"]["value"]  # undefined: the VGG's gain may be 0
    assert verdict.shift_invariance_verdict(m["cnn"], m["position"])[0] == verdict.NOT_TESTABLE


def test_training_gains_subtract_the_random_init_network_over_the_rule_shifts():
    rows = [dict(family="cnn", model_seed=0, block=0, layer="a", network=n, shift=s, invariance=v + (s == 8))
            for n, v in (("trained", 0.7), ("random-init", 0.5)) for s in invariance.SHIFTS]
    gains = invariance.training_gains(pd.DataFrame(rows))
    assert gains.gain.tolist() == pytest.approx([0.2])


def test_shifted_copies_finds_a_unit_that_is_a_shifted_copy_of_another():
    torch.manual_seed(0)
    base = torch.zeros(3, 32, 32)
    base[:, 4:9, 6:11] = torch.randn(3, 5, 5)
    copy = torch.roll(base, shifts=(7, 13), dims=(1, 2))
    others = torch.randn(6, 3, 32, 32)
    best, share = invariance.shifted_copies(torch.stack([base, copy, *others]).flatten(1))
    assert best[0] > 0.999 and best[1] > 0.999
    assert (best[2:] < 0.3).all() and share == 2 / 8
