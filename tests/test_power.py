"""The power of Prediction 2's rule on simulated studies, through the real verdict functions: both directions of error
and the intervals' coverage, and a rule that falls short is declared so."""
import dataclasses

import pytest

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
