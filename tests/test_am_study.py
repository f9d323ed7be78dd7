"""Prediction 1's tables from a score table with a known answer: the effects, the primary row, the gates and the
verdict each comparison gets; and the objectives themselves: shift-pooled ones are shift-invariant, none reads a
nonlinearity's output."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import actmax, am_study, verdict
from helpers.models import build_model, resolve_layer
from helpers.repetition import MEASURES
from helpers.units import AMGroup

KINDS = {"cnn": ("mid", "mid-pooled", "pooled", "classes"),
         "mlp": ("mid", "mid-pooled", "pooled", "classes", "residual")}
AM_SEEDS = (0, 1)


def score_table(mlp_shift, n=32, success=True, seed=0):
    """A score table where every trained CNN image scores 0.5 above its null, and every trained MLP image
    ``mlp_shift`` above its own, for every objective, setting and measure, over two model seeds and the AM seeds each
    suite renders (``am_study.suite_kinds``)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for family, shift in (("cnn", 0.5), ("mlp", mlp_shift)):
        for setting in am_study.AM_SETTINGS:
            for model_seed in (0, 1):
                for am_seed in AM_SEEDS:
                    kinds = am_study.suite_kinds(setting, am_seed, AM_SEEDS)
                    kinds = KINDS[family] if kinds is None else kinds
                    for objective in kinds:
                        for network in ("trained", "random-init"):
                            base = (shift if network == "trained" else 0.0) + 0.02 * torch.randn(n, generator=g)
                            rows += [dict(family=family, setting=setting, model_seed=model_seed, am_seed=am_seed,
                                          network=network, objective=objective, success=success, saturated=0.0,
                                          **{m: float(v) for m in MEASURES}) for v in base]
    return pd.DataFrame(rows)


def test_only_the_primary_objective_renders_at_later_am_seeds():
    assert am_study.suite_kinds("plain", 0, (0, 1, 2)) is None
    assert am_study.suite_kinds("plain", 2, (0, 1, 2)) == (verdict.PREDICTION1["objective"],)
    assert am_study.suite_kinds("contrast", 1, (0, 1, 2)) == ()


def _clustered(shift, seed_sd, seeds=4, am_seeds=3, n=20, seed=0):
    """Scores of a trained group ``shift`` above its null, with a spread between model seeds of ``seed_sd`` (drawn
    apart for the trained network and its null) and a smaller one between AM seeds."""
    g = np.random.default_rng(seed)
    sides = []
    for level in (shift, 0.0):
        values, models, ams = [], [], []
        for m in range(seeds):
            offset = g.normal(0, seed_sd)
            for a in range(am_seeds):
                values += list(g.normal(level + offset + g.normal(0, 0.1), 1, n))
                models += [m] * n
                ams += [a] * n
        sides.append((np.array(values), np.array(models), np.array(ams)))
    return sides


def test_the_hierarchical_interval_covers_the_spread_between_model_seeds():
    """With a planted spread between model seeds, the images' bootstrap alone covers the population δ far less often
    than the hierarchical one, which covers it in most draws."""
    from scipy.stats import norm

    from helpers import stats
    shift, seed_sd, draws = 0.5, 0.5, 40
    # trained - null ~ N(shift, 2 + 2 seed_sd² + 2 0.1²): the population δ = 2 Φ(shift / sd) - 1
    truth = 2 * norm.cdf(shift / np.sqrt(2 + 2 * seed_sd ** 2 + 2 * 0.01)) - 1
    covered = {"hierarchical": 0, "images": 0}
    for d in range(draws):
        trained, null = _clustered(shift, seed_sd, seed=d)
        e, _ = stats.clustered_effect(trained, null, replicates=300, seed=d)
        covered["hierarchical"] += e["low"] <= truth <= e["high"]
        e, _ = stats.effect_over_null(trained[0], null[0], replicates=300, seed=d)
        covered["images"] += e["low"] <= truth <= e["high"]
    assert covered["hierarchical"] >= 0.8 * draws and covered["images"] <= 0.6 * draws, covered


@pytest.mark.parametrize("mlp_shift,expected", [(0.5, verdict.SUPPORTED), (0.0, verdict.NOT_SUPPORTED)])
def test_a_known_answer_is_found(mlp_shift, expected):
    # 64 images a group: the direct δ between two unrelated networks' images needs them (two model seeds)
    gates, effects, comparisons = am_study.prediction1_tables(score_table(mlp_shift, n=64), replicates=200)
    assert all(g["passed"] for g in gates)
    assert {c["verdict"] for c in comparisons} == {expected}
    primary = [c for c in comparisons if c["primary"]]
    rule = verdict.PREDICTION1
    assert len(primary) == 1 and (primary[0]["objective"], primary[0]["measure"], primary[0]["setting"]) == (
        rule["objective"], rule["measure"], rule["setting"])
    # every matched objective under the plain setting, the primary one under both, for every measure
    assert len(comparisons) == (len(verdict.PREDICTION1_OBJECTIVES) + 1) * len(MEASURES)
    channels = am_study.channel_control(effects)
    assert channels["delta"] == 1.0 and channels["gates_ok"] and verdict.cnn_pattern(channels)
    controls = (True, "passed")
    assert verdict.prediction1(primary[0], controls, channels)[0] == expected
    direct = [e for e in effects if e["family"] == "mlp-vs-cnn" and e["objective"] == "mid"]
    assert direct and all((e["delta"] < -0.9) == (mlp_shift == 0.0) for e in direct)


def test_failed_gates_make_every_comparison_not_testable():
    gates, effects, comparisons = am_study.prediction1_tables(score_table(0.5, success=False), replicates=50)
    assert not any(g["passed"] for g in gates if g["gate"] == "success share")
    assert {c["verdict"] for c in comparisons} == {verdict.NOT_TESTABLE}
    assert not am_study.channel_control(effects)["gates_ok"]


FAMILIES = {"cnn": dict(width=1 / 16), "mlp": dict(depth=2, width=64, expansion=4, resolution=32)}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_shift_pooled_objective_is_invariant_to_a_circular_shift(family):
    torch.manual_seed(0)
    model = build_model(family, **FAMILIES[family]).eval()
    layer = am_study.neuron_layers(model)["last"]
    images = torch.rand(6, 3, 32, 32)
    shifted = torch.roll(images, shifts=(8, 24), dims=(2, 3))
    pooled = actmax.shift_pooled(actmax.unit(layer, [0, 3, 5]), stride=8)
    a, b = (am_study.objective_values(model, pooled, x) for x in (images, shifted))
    assert torch.allclose(a, b, atol=1e-5)
    plain = actmax.unit(layer, [0, 3, 5])  # the same neurons without pooling do move
    assert not torch.allclose(*(am_study.objective_values(model, plain, x) for x in (images, shifted)), atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_no_objective_reads_a_nonmonotone_or_flat_nonlinearity(family):
    torch.manual_seed(0)
    model = build_model(family, **FAMILIES[family]).eval()
    plan = am_study.objective_plan(model, 4, torch.rand(64, 3, 32, 32))
    assert set(plan) == set(KINDS[family])
    for kind, objective in plan.items():
        if objective.layer == "logits":
            continue
        _, module = resolve_layer(model, objective.layer)
        assert not isinstance(module, actmax.objectives.NONLINEARITIES), (kind, objective.layer)
    if family == "mlp":  # the MLP's neurons are its blocks' wide hidden layer (a privileged basis)
        _, module = resolve_layer(model, plan["pooled"].layer)
        assert isinstance(module, nn.Linear) and module.out_features == 4 * 64
    assert plan["pooled"].pool_stride == am_study.POOL_STRIDE and not plan["classes"].pool_stride
    # the primary: the middle layer pair's own units, a CNN channel's mean or an MLP block's hidden neuron
    mid = am_study.neuron_layers(model)["mid"]
    assert plan["mid"].layer == mid and not plan["mid"].pool_stride
    _, module = resolve_layer(model, mid)
    if family == "mlp":
        assert isinstance(module, nn.Linear) and module.out_features == 4 * 64
    else:
        assert isinstance(module, nn.BatchNorm2d) and plan["mid"].name.endswith("channel")
    # a GELU named as a layer is read before it, as a ReLU is
    assert actmax.preactivation(build_model("mlp", **FAMILIES["mlp"]), "blocks.0.block.1") == "blocks.0.block.0"


def test_pooled_and_plain_objectives_share_a_batch_each_image_on_its_own_grid():
    """In one batch the shift-pooled part's images are rolled by multiples of its stride (several, over draws) and
    the plain part's stay as they are."""
    batch = actmax.Stacked([actmax.shift_pooled(actmax.class_logit([0, 1]), 8), actmax.class_logit([2])])
    assert batch.row_strides.tolist() == [8, 8, 0]
    x = torch.rand(3, 3, 32, 32)
    shift, g = actmax.grid_shift(batch.row_strides), torch.Generator().manual_seed(0)
    grid = [(dy, dx) for dy in range(0, 32, 8) for dx in range(0, 32, 8)]
    seen = set()
    for _ in range(20):
        y = shift(x, g)
        assert torch.equal(y[2], x[2])
        found = [s for s in grid if torch.equal(y[0], x[0].roll((-s[0], -s[1]), (1, 2)))]
        assert len(found) == 1
        seen.add(found[0])
    assert len(seen) > 5


def test_success_is_rejudged_when_the_gate_changes_without_rendering(monkeypatch):
    """A suite holds objective values, not flags: a changed gate changes the table; gain and quantile are kept."""
    natural = torch.arange(100.0)[:, None].repeat(1, 3)
    suite = {AMGroup("classes", network): dict(images=torch.rand(3, 3, 32, 32), targets=[0, 1, 2],
                                               final=torch.tensor([98.5, 60.0, 10.0]),
                                               start_value=torch.tensor([1.0, 1.0, 20.0]), natural=natural)
             for network in ("trained", "random-init")}
    table = am_study.score_table({("cnn", "plain", 0, 0): suite})
    assert table.success.tolist() == [True, False, False] * 2
    assert table.gain.tolist()[:3] == [97.5, 59.0, -10.0]
    assert table.natural_quantile.tolist()[:3] == pytest.approx([0.99, 0.6, 0.1])
    monkeypatch.setitem(verdict.AM_GATES, "success_quantile", 0.5)
    assert am_study.score_table({("cnn", "plain", 0, 0): suite}).success.tolist() == [True, True, False] * 2
    monkeypatch.setitem(verdict.AM_GATES, "success_quantile", 0.05)
    # above the natural quantile but below its own start value: the third still fails
    assert am_study.score_table({("cnn", "plain", 0, 0): suite}).success.tolist() == [True, True, False] * 2


@pytest.mark.parametrize("family", FAMILIES)
def test_robustness_rows_render_half_the_primary_units_and_a_subset_of_them(family):
    """The budget's AM cut: the primary objective keeps every unit, each robustness row half (the residual stream a
    quarter), and the pooled middle-layer row pools units the primary also renders."""
    torch.manual_seed(0)
    model = build_model(family, **FAMILIES[family]).eval()
    plan = am_study.objective_plan(model, 8, torch.rand(64, 3, 32, 32))
    sizes = {kind: len(objective.targets) for kind, objective in plan.items()}
    expected = dict(mid=8, **{"mid-pooled": 4}, pooled=4, classes=10, **({"residual": 2} if family == "mlp" else {}))
    assert sizes == expected
    assert set(plan["mid-pooled"].targets) < set(plan["mid"].targets)
    assert am_study.setting_units("plain", 32) == 32 and am_study.setting_units("contrast", 32) == 16


def test_the_every_shift_pooled_objective_is_invariant_to_any_circular_shift():
    """Pooled over every shift (stride 1, evaluated over the whole grid), the MLP's middle-layer neurons do not move
    under a shift that is no multiple of 8 (the CNN's channels take the same code path; 1,024 of its passes would
    take minutes)."""
    torch.manual_seed(0)
    model = build_model("mlp", **FAMILIES["mlp"]).eval()
    plan = am_study.objective_plan(model, 3, torch.rand(64, 3, 32, 32), kinds=("mid-pooled",))
    pooled = plan["mid-pooled"]
    images = torch.rand(4, 3, 32, 32)
    shifted = torch.roll(images, shifts=(3, 7), dims=(2, 3))
    a, b = (am_study.objective_values(model, pooled, x, most_shifts=None) for x in (images, shifted))
    assert torch.allclose(a, b, atol=1e-4)
    assert len(am_study.evaluated_shifts(32, 1)) == am_study.EVAL_SHIFTS  # the study's estimate: a sample
    assert len(am_study.evaluated_shifts(32, 8)) == 16                   # a 16-shift grid: all of it


def test_the_artifact_control_repeats_under_pooling_and_not_without():
    """Random localized ReLU units pooled over every shift put repetition into their images; the same units
    unpooled (one position) do not."""
    from helpers.repetition import MEASURES
    kw = dict(steps=96, lr=0.05, parameterization="fft", progress=False,
              transforms=actmax.standard_transforms(jitter_pixels=2), color_matrix=actmax.cifar_color_matrix())
    pooled, start = am_study.artifact_control(12, seed=0, **kw)
    plain = actmax.render(am_study.LocalizedUnits(12, seed=0), actmax.unit("response", range(12)), seed=0,
                          **kw).images
    for name in ("motif", "periodic"):
        score = MEASURES[name]
        assert score(pooled).median() > score(plain).median() + 0.03, name
        assert score(pooled).median() > score(start).median() + 0.03, name


def test_the_rule_supports_a_planted_mlp_like_the_cnn_and_rejects_a_planted_null():
    """Prediction 1's power simulation through the real table code: at a clear effect and low noise the planted
    answers come back."""
    from helpers import power
    noise = power.MotifNoise(cnn_null=0.08, mlp_null=0.01, cnn_gain=0.06, model_seeds=0.005, am_seeds=0.003,
                             images=0.03, per_cell=24)
    got = {name: [power.simulate_motifs(name, 4, 2, noise, replicates=100, seed=s)[0] for s in range(6)]
           for name in power.PLANTED_MOTIF}
    assert got["similar"].count(verdict.SUPPORTED) >= 5, got
    assert got["null"].count(verdict.NOT_SUPPORTED) >= 5, got
    assert got["apart"].count(verdict.SUPPORTED) == 0, got   # the position alike, the images far apart


def test_motif_noise_recovers_planted_variance_components():
    """Levels, and the SDs between model seeds, between AM seeds and between images, each read without the lower
    levels' variance (which the simulation adds again); the model seeds' at the upper end of its estimate."""
    from helpers import power
    g = np.random.default_rng(0)
    rows = []
    for family in ("cnn", "mlp"):
        for network, level in (("trained", 0.3), ("random-init", 0.1)):
            for m in range(12):
                seed_level = level + g.normal(0, 0.02)
                for a in range(3):
                    cell = seed_level + g.normal(0, 0.01)
                    rows += [dict(family=family, network=network, model_seed=m, am_seed=a, objective="mid",
                                  setting="plain", success=True, motif=v) for v in g.normal(cell, 0.05, 40)]
    noise = power.motif_noise(pd.DataFrame(rows))
    assert abs(noise.cnn_gain - 0.2) < 0.02 and noise.per_cell == 40
    assert 0.045 < noise.images < 0.055 and noise.am_seeds < 0.02
    assert 0.015 < noise.model_seeds < 0.045  # 0.02, at its upper 80% bound from 12 seeds
    one_seed = pd.DataFrame(rows).query("model_seed == 0")
    assert power.motif_noise(one_seed) is None  # no spread between seeds to read: no power table


def test_the_pooled_objective_is_evaluated_on_the_same_sample_of_its_shifts_every_time():
    first, again = am_study.evaluated_shifts(32, 1), am_study.evaluated_shifts(32, 1)
    assert torch.equal(first, again) and len({tuple(s) for s in first.tolist()}) == am_study.EVAL_SHIFTS
    assert ((first >= 0) & (first < 32)).all()
