"""Prediction 1's tables from a score table with a known answer: the effects, Holm's family, the gates and the
verdict each comparison gets."""
import pandas as pd
import pytest
import torch

from helpers import am_study, verdict


def score_table(mlp_shift, n=12, success=True, seed=0):
    """A score table where every trained CNN image scores 0.5 above its null, and every trained MLP image
    ``mlp_shift`` above its own, for every objective, setting and measure."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for family, shift in (("cnn", 0.5), ("mlp", mlp_shift)):
        for setting in am_study.AM_SETTINGS:
            objectives = [*verdict.PREDICTION1_OBJECTIVES] + (["channels"] if family == "cnn" else [])
            for objective in objectives:
                for network in ("trained", "random-init"):
                    base = (shift if network == "trained" else 0.0) + 0.02 * torch.randn(n, generator=g)
                    rows += [dict(family=family, setting=setting, am_seed=0, network=network, objective=objective,
                                  success=success, saturated=0.0, autocorrelation=float(v), spectral=float(v))
                             for v in base]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("mlp_shift,expected", [(0.5, verdict.SUPPORTED), (0.0, verdict.NOT_SUPPORTED)])
def test_a_known_answer_is_found(mlp_shift, expected):
    gates, effects, comparisons = am_study.prediction1_tables(score_table(mlp_shift), replicates=200)
    assert all(g["passed"] for g in gates)
    assert {c["verdict"] for c in comparisons} == {expected}
    assert len(comparisons) == len(verdict.PREDICTION1_OBJECTIVES) * len(am_study.MEASURES) * len(am_study.AM_SETTINGS)
    assert verdict.prediction1(comparisons)[0] == expected
    channels = [e for e in effects if e["objective"] == "channels"]
    assert channels and all(not e["in_verdict"] and e["p_holm"] != e["p_holm"] for e in channels)  # NaN: outside
    cnn = [e for e in effects if e["family"] == "cnn" and e["in_verdict"]]
    assert all(e["delta"] == 1.0 and e["p_holm"] < 0.05 for e in cnn)


def test_failed_gates_make_every_comparison_not_testable():
    gates, _, comparisons = am_study.prediction1_tables(score_table(0.5, success=False), replicates=50)
    assert not any(g["passed"] for g in gates if g["gate"] == "success share")
    assert {c["verdict"] for c in comparisons} == {verdict.NOT_TESTABLE}
