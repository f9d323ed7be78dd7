"""The power of Prediction 2's rule on simulated studies, through the real verdict functions: both directions of error
and the intervals' coverage, and a rule that falls short is declared so."""
import dataclasses

import pytest
import torch

from helpers import power, verdict

QUIET = power.Noise(null=0.10, ceiling=0.45, ceiling_null=0.10, between_seeds=0.01, between_sae_seeds=0.005,
                    images=0.005, gate_failure=0.05)
SURE = dataclasses.replace(QUIET, gate_failure=0.0)  # no seed lost to a gate


def test_at_low_noise_the_rule_finds_a_planted_effect_rejects_a_planted_null_and_covers_both():
    got = power.power(4, studies=1000, noise=QUIET)
    assert got["similar_supported"] >= power.REQUIRED["similar_supported"]
    assert got["null_not_supported"] >= power.REQUIRED["null_not_supported"]
    assert got["null_supported"] <= power.REQUIRED["null_supported_at_most"]
    assert min(got["coverage_similar"], got["coverage_null"]) >= power.REQUIRED["coverage"] and got["adequate"]


def test_at_high_noise_the_rule_falls_short_and_says_so():
    loud = power.Noise(between_seeds=0.3, images=0.05)
    got = power.power(2, studies=100, noise=loud)
    assert not got["adequate"] and got["similar_supported"] < power.REQUIRED["similar_supported"]


def test_a_simulated_study_goes_through_the_real_verdict_functions(monkeypatch):
    calls = []
    real = verdict.prediction2_direction

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(verdict, "prediction2_direction", counted)
    got, position, (low, high) = power.simulate_study(power.PLANTED["similar"], 4, SURE, seed=3)
    assert got in verdict.VERDICTS and low <= position <= high
    assert len(calls) == 6 * len(verdict.QUESTIONS)  # three comparisons, two directions, every question


def test_seeds_lost_to_failed_gates_leave_too_few_for_a_verdict():
    failing = power.Noise(gate_failure=1.0)
    assert power.simulate_study(0.75, 4, failing)[0] == verdict.NOT_TESTABLE
    assert power.power(4, studies=20, noise=failing)["similar_supported"] == 0


@pytest.mark.parametrize("position", [0.0, 0.75])
def test_a_planted_position_is_measured_where_it_was_planted(position):
    got = [power.simulate_study(position, 4, SURE, seed=s)[1] for s in range(20)]
    assert sum(got) / len(got) == pytest.approx(position, abs=0.05)


def test_the_compare_page_shows_every_requirement_of_the_power_table():
    from types import SimpleNamespace

    from helpers.compare_study import ComparePage
    got = power.power(4, studies=10, noise=SURE)
    table = ComparePage.power_table(None, SimpleNamespace(power=got))
    assert len(table) == 5 and table["share"].tolist() == [got["similar_supported"], got["null_not_supported"],
                                                            got["null_supported"], got["coverage_similar"],
                                                            got["coverage_null"]]


def test_the_mlp_to_vgg_direction_is_simulated_at_its_own_levels_and_does_not_decide():
    """MLP -> VGG is simulated at its own (narrower, as measured) span, and the frozen rule decides by VGG -> MLP
    alone (``verdict.PREDICTION2["deciding_directions"]``): narrowing the reverse span leaves the decided power
    exactly as it was. Were both directions to decide again, the narrow span would lower it and this fails."""
    narrow = dataclasses.replace(QUIET, reverse_null=0.25, reverse_ceiling=0.36, reverse_ceiling_null=0.25,
                                 between_seeds=0.03, images=0.01)
    wide = dataclasses.replace(narrow, reverse_null=None, reverse_ceiling=None, reverse_ceiling_null=None)
    assert narrow.levels(reverse=True) == (0.25, 0.0, 0.36, 0.25) and wide.levels(True) == wide.levels()
    assert verdict.PREDICTION2["deciding_directions"] == ("cnn->mlp",)
    assert power.power(4, studies=200, noise=narrow) == power.power(4, studies=200, noise=wide)


def test_the_noise_is_read_from_both_directions_of_the_question():
    import pandas as pd
    per_feature = pd.DataFrame([dict(arm="l1", statistic="observed", entering=True, comparison="question",
                                     direction=d, model_seed=m, sae_seed=t, heldout_r=0.3 + 0.01 * m + 0.001 * t)
                                for d in ("cnn->mlp", "mlp->cnn") for m in range(4) for t in range(2)])
    statistics = pd.DataFrame([dict(arm="l1", comparison="question", direction=d, statistic=k, value=v, low=v - 0.02,
                                    high=v + 0.02)
                               for d in ("cnn->mlp", "mlp->cnn")
                               for k, v in (("observed", 0.3), ("null-full-shuffle", 0.01))])
    directions = [dict(arm="l1", comparison="question", direction="cnn->mlp", question="shares", null_value=0.1,
                       ceiling=0.45, ceiling_null=0.1),
                  dict(arm="l1", comparison="question", direction="mlp->cnn", question="shares", null_value=0.25,
                       ceiling=0.36, ceiling_null=0.25),
                  dict(arm="l1", comparison="question", direction="cnn->mlp", question="beyond", null_value=0.12,
                       ceiling=0.45, ceiling_null=0.3)]
    got = power.noise_from(per_feature, statistics, directions, {"l1": (3, 4)})
    assert got.levels() == (0.1, 0.01, 0.45, 0.1) and got.levels(reverse=True) == (0.25, 0.01, 0.36, 0.25)
    # "beyond class and predictions" at its own zero and ceiling null; MLP -> VGG's, not measured, at its own null
    assert got.conditional_levels() == (0.12, 0.3) and got.conditional_levels(reverse=True) == (0.25, 0.25)
    assert got.gate_failure == pytest.approx(0.25) and got.between_seeds == pytest.approx(0.0129, abs=1e-3)
    assert power.noise_from(per_feature, statistics, directions, {"l1": (0, 4)}) is None  # no seed: undefined


def test_the_shift_invariance_rule_finds_a_planted_gain_and_rejects_a_null_at_low_noise():
    """Through the real ``invariance.pair_gains`` and ``verdict.shift_invariance_verdict``: at a VGG gain well above
    its seed spread the planted answers come back; at a seed spread as large as the gain (the exploratory middle
    layers) the power falls short and the table says so."""
    quiet = power.gain_power(4, power.GainNoise(cnn_gain=0.2, cnn_seeds=0.02, mlp_seeds=0.01, blocks=0.02), studies=60)
    assert quiet["similar_supported"] >= 0.8 and quiet["null_not_supported"] >= 0.8 and quiet["null_supported"] <= 0.05
    noisy = power.gain_power(4, power.GainNoise(cnn_gain=0.08, cnn_seeds=0.09, mlp_seeds=0.01, blocks=0.03), studies=60)
    assert not noisy["adequate"] and noisy["similar_supported"] < 0.5


def test_poisson_weights_by_inversion_follow_poisson_one():
    """The AM bootstrap's weights (``stats.poisson_one``) have Poisson(1)'s frequencies: each of 0-4 within 0.005 of
    e^-1 / k! over 400,000 draws, and nothing negative or fractional."""
    import math

    from helpers import stats
    draws = stats.poisson_one((400, 1000), torch.Generator().manual_seed(0))
    assert draws.dtype == torch.float64 and (draws >= 0).all() and (draws == draws.round()).all()
    for k in range(5):
        assert abs((draws == k).double().mean().item() - math.exp(-1) / math.factorial(k)) < 0.005, k


BEYOND = dataclasses.replace(SURE, conditional=0.12, ceiling_conditional=0.33)  # the ceiling spans 0.12 over it


@pytest.mark.parametrize("question", list(verdict.QUESTIONS))
def test_each_question_finds_a_planted_effect_and_rejects_a_planted_null_at_its_own_levels(question):
    got = power.power(4, studies=300, noise=BEYOND, question=question)
    assert got["adequate"], got
    position = power.simulate_study(power.PLANTED["similar"], 4, BEYOND, seed=1, question=question)[1]
    assert position == pytest.approx(power.PLANTED["similar"], abs=0.15)


def test_a_planted_beyond_question_is_placed_on_its_own_span_and_leaves_shares_as_it_was():
    """Planted similar on "beyond", the observation sits 0.75 of the narrow conditional span above the conditional
    null: far below similar on the random-init scale. "Shares features" never reads the conditional levels, so its
    simulation is the same with or without them (the frozen synthetic verdicts stay as they were)."""
    assert power.simulate_study(power.PLANTED["similar"], 4, BEYOND, seed=2, question="beyond")[0] == verdict.SUPPORTED
    on_shares_scale = (0.12 + power.PLANTED["similar"] * (0.45 - 0.33) - 0.10) / (0.45 - 0.10)
    assert on_shares_scale < verdict.PREDICTION2["min_position"]
    assert [power.simulate_study(0.75, 4, BEYOND, seed=s) for s in range(5)] == [
        power.simulate_study(0.75, 4, SURE, seed=s) for s in range(5)]


def test_the_linear_measures_noise_is_read_from_its_per_seed_values():
    import pandas as pd
    seeds = pd.DataFrame([dict(comparison="question", arm="linear", direction=d, statistic="observed", model_seed=m,
                               other_seed=None, value=0.4 + 0.02 * m) for d in ("cnn->mlp", "mlp->cnn")
                          for m in range(4)]
                         + [dict(comparison="question", arm="linear", direction="cnn->mlp", statistic="ceiling",
                                 model_seed=0, other_seed=1, value=0.9)])
    statistics = [dict(arm="linear", comparison="question", direction=d, statistic=k, value=v, low=v - 0.01,
                       high=v + 0.01) for d in ("cnn->mlp", "mlp->cnn")
                  for k, v in (("observed", 0.43), ("null-full-shuffle", 0.0))]
    directions = [dict(arm="linear", comparison="question", direction="cnn->mlp", question="shares", null_value=0.25,
                       ceiling=0.83, ceiling_null=0.17)]
    got = power.linear_noise(seeds, statistics, directions, 4)
    assert got.levels() == (0.25, 0.0, 0.83, 0.17) and got.gate_failure == 0.0 and got.between_sae_seeds == 0.0
    assert got.between_seeds == pytest.approx(pd.Series([0.4, 0.42, 0.44, 0.46]).std())
    assert got.images == pytest.approx(2 * 0.02 / 3.92)  # four units (the seeds), the observation's width
