"""Decision rules on synthetic tables: every outcome reachable, gates and corrections as written."""
import pytest
import torch

from helpers import stats
from helpers import verdict as V

GOOD_METRICS = {"dead": 10, "n_features": 300, "explained_variance": 0.9, "l0": 30.0,
                "accuracy_original": 0.80, "accuracy_spliced": 0.79}
FLAT_LOG = [dict(l0=30.0, explained_variance=0.9)] * 50


def test_gates_pass_and_each_one_can_fail():
    assert V.gates_passed(V.sae_gates(GOOD_METRICS, 32, FLAT_LOG))
    failing = {"dead share": dict(dead=100), "explained variance": {"explained_variance": 0.5},
               "accuracy drop": {"accuracy_spliced": 0.70}, "L0 / target": dict(l0=100.0)}
    for gate, change in failing.items():
        rows = V.sae_gates({**GOOD_METRICS, **change}, 32, FLAT_LOG)
        assert [r["gate"] for r in rows if not r["passed"]] == [gate]
    drifting = [dict(l0=30.0 + 10 * i, explained_variance=0.9) for i in range(50)]
    rows = V.sae_gates(GOOD_METRICS, 32, drifting)
    assert [r["gate"] for r in rows if not r["passed"]] == ["final drift"]


def test_final_drift():
    assert V.final_drift(FLAT_LOG) == 0
    log = [dict(l0=10.0, explained_variance=0.5)] * 45 + [dict(l0=10.0, explained_variance=0.5)] * 3 + \
        [dict(l0=20.0, explained_variance=0.5)] * 2
    # last 10 entries: 5 at 10 then 3 at 10 and 2 at 20 -> halves 10 and 14
    assert V.final_drift(log) == pytest.approx(0.4)


def test_a_log_too_short_to_show_convergence_fails_the_drift_gate():
    # a run shorter than the log interval (the full-size check's 10 SAE steps) logs once: no convergence to judge
    one_entry = [dict(l0=30.0, explained_variance=0.9)]
    assert V.final_drift(one_entry) == float("inf") and V.final_drift([]) == float("inf")
    rows = V.sae_gates(GOOD_METRICS, 32, one_entry)
    assert [r["gate"] for r in rows if not r["passed"]] == ["final drift"]


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5]
    assert stats.holm([0.001, 0.9]) == pytest.approx([0.002, 0.9])


def null(valid=True, p=0.001, low=0.05):
    return dict(valid=valid, p_holm=p, diff_low=low)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(position=dict(value=0.8, low=0.6, high=0.9)), V.SUPPORTED),
    (dict(position=dict(value=0.1, low=0.0, high=0.3)), V.NOT_SUPPORTED),
    (dict(position=dict(value=0.5, low=0.3, high=0.7)), V.INCONCLUSIVE),
    (dict(position=dict(value=0.8, low=0.6, high=0.9), nulls=[null(p=0.2)]), V.INCONCLUSIVE),
    (dict(position=dict(value=0.8, low=0.6, high=0.9), nulls=[null(low=-0.01)]), V.INCONCLUSIVE),
    (dict(nulls=[null(), null(p=0.2)]), V.INCONCLUSIVE),                  # a floor not beaten
    (dict(gates_ok=False), V.NOT_TESTABLE),
    (dict(nulls=[null(valid=False), null()]), V.NOT_TESTABLE),            # the zero invalid: no fallback
    (dict(span_low=0.01), V.NOT_TESTABLE),
    (dict(span_low=float("nan")), V.NOT_TESTABLE),   # no ceiling at all
])
def test_prediction2_direction_reaches_every_outcome(kwargs, expected):
    args = dict(gates_ok=True, nulls=[null(), null(valid=False, p=0.9, low=-1)],
                position=dict(value=0.8, low=0.6, high=0.9), span_low=0.3)
    args.update(kwargs)
    got, reason = V.prediction2_direction(**args)
    assert got == expected, reason


def study_rows(question=V.SUPPORTED, reference=V.SUPPORTED, sanity=V.SUPPORTED, arms=("l1", "topk"),
               questions=tuple(V.QUESTIONS)):
    """A synthetic directions table: every comparison in both directions of every arm and question (the question's
    VGG -> MLP first)."""
    verdicts = dict(question=question, reference=reference, sanity=sanity, beside=V.NOT_SUPPORTED)
    names = dict(question=("cnn->mlp", "mlp->cnn"))
    return [dict(comparison=c, arm=arm, question=q, direction=d, reason="synthetic",
                 verdict=verdicts[c] if isinstance(verdicts[c], str) else verdicts[c][i])
            for arm in arms for q in questions for c in verdicts
            for i, d in enumerate(names.get(c, ("a->b", "b->a")))]


ALL_SEEDS = {"l1": (4, 4), "topk": (4, 4)}


@pytest.mark.parametrize("rows,seeds,expected", [
    (study_rows(), ALL_SEEDS, V.SUPPORTED),
    (study_rows(question=V.NOT_SUPPORTED), ALL_SEEDS, V.NOT_SUPPORTED),
    # the directions disagree: the frozen rule's VGG -> MLP decides (both together would be inconclusive)
    (study_rows(question=(V.SUPPORTED, V.NOT_SUPPORTED)), ALL_SEEDS, V.SUPPORTED),
    (study_rows(question=(V.NOT_SUPPORTED, V.SUPPORTED)), ALL_SEEDS, V.NOT_SUPPORTED),
    (study_rows(question=V.INCONCLUSIVE), ALL_SEEDS, V.INCONCLUSIVE),
    # the reference pair is a comparator, not a gate: unresolved or dissimilar, the question still decides
    (study_rows(reference=(V.SUPPORTED, V.INCONCLUSIVE)), ALL_SEEDS, V.SUPPORTED),
    (study_rows(reference=V.NOT_SUPPORTED, question=V.NOT_SUPPORTED), ALL_SEEDS, V.NOT_SUPPORTED),
    (study_rows(sanity=(V.NOT_TESTABLE, V.SUPPORTED)), ALL_SEEDS, V.NOT_TESTABLE),  # the sanity control fails
    (study_rows(), {"l1": (3, 4), "topk": (4, 4)}, V.SUPPORTED),         # one seed of four dropped: 3 are enough
    (study_rows(), {"l1": (2, 4), "topk": (4, 4)}, V.NOT_TESTABLE),      # two dropped: too few
    (study_rows(), {"l1": (1, 2), "topk": (2, 2)}, V.NOT_TESTABLE),      # of two seeds both are needed
])
def test_prediction2_reaches_every_outcome_and_needs_the_sanity_control_and_the_seeds(rows, seeds, expected):
    got = V.prediction2(rows, "hidden", seeds)
    assert set(got) == set(V.QUESTIONS)
    assert got["shares"]["verdict"] == expected, got["shares"]
    if expected == V.NOT_TESTABLE:
        assert any(w in got["shares"]["reason"] for w in ("known case", "model seeds"))


def test_beyond_class_is_decided_only_at_the_layers_fixed_before_the_run(monkeypatch):
    rows = study_rows(question=V.NOT_SUPPORTED)
    monkeypatch.setattr(V, "CONDITIONAL_LAYERS", ())
    described = V.prediction2(rows, "mid", ALL_SEEDS)["beyond"]
    assert described["verdict"] == V.NOT_TESTABLE and "described, not decided" in described["reason"]
    monkeypatch.setattr(V, "CONDITIONAL_LAYERS", ("mid",))
    assert V.prediction2(rows, "mid", ALL_SEEDS)["beyond"]["verdict"] == V.NOT_SUPPORTED
    assert V.prediction2(rows, "hidden", ALL_SEEDS)["beyond"]["verdict"] == V.NOT_TESTABLE


def test_the_l1_arm_decides_and_topk_is_a_robustness_row():
    rows = study_rows()
    for r in rows:
        if r["arm"] == "topk" and r["comparison"] == "question":
            r["verdict"] = V.NOT_SUPPORTED
    got = V.prediction2(rows, "hidden", ALL_SEEDS)["shares"]
    assert got["verdict"] == V.SUPPORTED and got["per_arm"]["topk"][0] == V.NOT_SUPPORTED
    assert V.combine([]) == V.NOT_TESTABLE
    assert V.prediction2([r for r in rows if r["arm"] == "topk"], "hidden", ALL_SEEDS)["shares"]["verdict"] == \
        V.NOT_TESTABLE  # without the deciding arm


def test_seeds_whose_saes_fail_a_gate_are_dropped_per_arm():
    from helpers.units import SAESpec
    specs = [SAESpec(f, "trained", s, arm, t) for f in ("cnn", "mlp", "resnet") for s in range(4)
             for arm in ("l1", "topk") for t in range(2)] + [SAESpec("cnn", "random-init", 0, "l1", 0)]
    gates = {spec.id: True for spec in specs} | {SAESpec("mlp", "trained", 2, "l1", 1).id: False,
                                                 SAESpec("cnn", "random-init", 0, "l1", 0).id: False,
                                                 SAESpec("resnet", "trained", 0, "topk", 0).id: False}
    # a random-init SAE drops nothing, nor does the reference family's (a comparator)
    assert V.seeds_kept(gates, specs, "l1", [0, 1, 2, 3]) == [0, 1, 3]
    assert V.seeds_kept(gates, specs, "topk", [0, 1, 2, 3]) == [0, 1, 2, 3]
    assert V.enough_seeds(3, 4) and not V.enough_seeds(2, 4) and V.enough_seeds(2, 2) and not V.enough_seeds(1, 2)


# ----------------------------------------------------------------------------- Prediction 2, one arm's decisions

def measured_direction(comparison="question", direction="a->b", observed=0.65, nulls=None, ceiling=(0.9, 0.1),
                       random_alive=1.0, ceiling_nulls=None):
    """A hand-made ``compare.DirectionMeasurement``. ``nulls``: {null: (value, p)}; ``ceiling``: (value, its
    conditional null's value) or None; ``ceiling_nulls``: the ceiling's other nulls (default: the full shuffle 0.0,
    the random-init 0.15). Every statistic's replicates are its value plus one shared noise, so a difference's
    replicates are exact and the position's interval is the position."""
    from helpers.compare import DirectionMeasurement
    nulls = nulls or {"null-conditional-shuffle": (0.1, 0.001), "null-full-shuffle": (0.0, 0.001),
                      "null-random-init": (0.2, 0.001)}
    values = {"observed": observed, **{k: v for k, (v, _) in nulls.items()}}
    if ceiling:
        values.update({"ceiling": ceiling[0], "ceiling-null": ceiling[1]},
                      **(ceiling_nulls or {"ceiling-null-full-shuffle": 0.0, "ceiling-null-random-init": 0.15}))
    noise = 0.01 * torch.randn(100, generator=torch.Generator().manual_seed(0))
    replicates = {k: v + noise for k, v in values.items()}
    statistics = {k: dict(value=v, low=v - 0.02, high=v + 0.02) for k, v in values.items()}
    for k, (v, p) in nulls.items():
        statistics[k].update(p=p, diff=observed - v, diff_low=observed - v - 0.01, diff_high=observed - v + 0.01)
    alive = {k: random_alive if k.endswith("random-init") else None for k in values if k not in ("observed",
                                                                                               "ceiling")}
    return DirectionMeasurement(comparison, "l1", direction, [f"{direction}-a", f"{direction}-b"], statistics,
                                replicates, alive, "model seed" if ceiling else "none",
                                dict(median=0.55, code_cka=0.7))


def passed(*measured):
    return {i: True for m in measured for i in m.sae_ids}


def test_prediction2_arm_rows_hold_the_measurement_and_its_validity():
    m = measured_direction()
    rows, (shares, beyond) = V.prediction2_arm([m], passed(m))
    assert [r["statistic"] for r in rows] == list(m.statistics)
    assert all(r["valid"] is True for r in rows) and all(r == dict(
        comparison="question", arm="l1", direction="a->b", statistic=r["statistic"], **m.statistics[r["statistic"]],
        valid=True, **({"p_holm": r["p_holm"]} if "p_holm" in r else {})) for r in rows)
    # "shares features": the random-init null (0.2) sets the zero, the ceiling over its own random-init null (0.15)
    assert (shares["question"], shares["strongest_null"], shares["null_value"]) == ("shares", "null-random-init", 0.2)
    assert shares["span"] == pytest.approx(0.75) and shares["position"] == pytest.approx(0.6)
    assert shares["position_low"] == pytest.approx(0.6) == shares["position_high"]  # the shared noise cancels
    assert shares["position_vs_full-shuffle"] == pytest.approx(0.65 / 0.9)
    # "beyond class and predictions": the conditional shuffle (0.1), the ceiling over its own (0.1)
    assert (beyond["strongest_null"], beyond["span"]) == ("null-conditional-shuffle", pytest.approx(0.8))
    assert beyond["position"] == pytest.approx(0.6875) and "position_vs_random-init" not in beyond
    assert shares["median"] == 0.55 and shares["code_cka"] == 0.7 and shares["gates_ok"]  # the diagnostics carried
    assert (shares["verdict"], beyond["verdict"], shares["ceiling_kind"]) == (V.SUPPORTED, V.SUPPORTED, "model seed")


def test_shares_features_is_read_from_the_random_init_null_and_is_not_testable_without_it():
    strong_random = {"null-conditional-shuffle": (0.1, 0.001), "null-full-shuffle": (0.0, 0.001),
                     "null-random-init": (0.4, 0.5)}
    valid = measured_direction(nulls=strong_random)
    rows, (entry, _) = V.prediction2_arm([valid], passed(valid))
    assert next(r for r in rows if r["statistic"] == "null-random-init")["valid"]
    assert entry["strongest_null"] == "null-random-init" and entry["verdict"] == V.NOT_SUPPORTED
    invalid = measured_direction(nulls=strong_random, random_alive=V.MIN_ALIVE_SHARE_FOR_NULL - 0.01)
    rows, (entry, beyond) = V.prediction2_arm([invalid], passed(invalid))
    random = next(r for r in rows if r["statistic"] == "null-random-init")
    assert random["valid"] is False and "p_holm" not in random  # not tested
    # no silent fallback to the full shuffle: the question loses its zero
    assert entry["strongest_null"] is None and entry["verdict"] == V.NOT_TESTABLE and "zero" in entry["reason"]
    assert beyond["verdict"] == V.SUPPORTED  # the other question keeps its own null


def test_a_floor_that_sits_above_the_zero_must_be_beaten_but_does_not_move_the_position():
    m = measured_direction(nulls={"null-conditional-shuffle": (0.1, 0.001), "null-full-shuffle": (0.3, 0.2),
                                  "null-random-init": (0.2, 0.001)})
    entry = V.prediction2_arm([m], passed(m))[1][0]
    assert entry["position"] == pytest.approx(0.6) and entry["verdict"] == V.INCONCLUSIVE  # p 0.2 for the floor


def test_a_ceiling_whose_lower_bound_does_not_clear_its_null_is_not_testable():
    m = measured_direction(ceiling=(0.3, 0.1), ceiling_nulls={"ceiling-null-full-shuffle": 0.0,
                                                              "ceiling-null-random-init": 0.27})
    entry = V.prediction2_arm([m], passed(m))[1][0]
    assert entry["span"] == pytest.approx(0.03) and entry["verdict"] == V.NOT_TESTABLE and "lower bound" in \
        entry["reason"]


def test_prediction2_arm_adjusts_each_comparisons_and_questions_valid_nulls_together():
    ps = lambda *p: dict(zip(V.NULLS, [(0.1, p[0]), (0.0, p[1]), (0.2, p[2])]))  # noqa: E731
    measured = [measured_direction("question", "a->b", nulls=ps(0.01, 0.02, 0.03), random_alive=0.2),
                measured_direction("question", "b->a", nulls=ps(0.01, 0.04, 0.001)),
                measured_direction("reference", "a->c", nulls=ps(0.01, 0.01, 0.01))]
    rows, directions = V.prediction2_arm(measured, passed(*measured))

    def tested(c, question):
        return [r for r in rows if r["comparison"] == c and r["statistic"] in V.QUESTIONS[question].nulls
                and "p_holm" in r]
    assert [r["p"] for r in tested("question", "shares")] == [0.02, 0.04, 0.001]  # the invalid null left out
    assert [r["p_holm"] for r in tested("question", "shares")] == pytest.approx(stats.holm([0.02, 0.04, 0.001]))
    assert [r["p_holm"] for r in tested("question", "beyond")] == pytest.approx([0.02, 0.02])
    assert [r["p_holm"] for r in tested("reference", "shares")] == pytest.approx([0.02] * 2)  # its own family
    assert [(d["direction"], d["question"]) for d in directions] == [
        ("a->b", "shares"), ("a->b", "beyond"), ("b->a", "shares"), ("b->a", "beyond"), ("a->c", "shares"),
        ("a->c", "beyond")]


def test_the_mlp_is_read_beside_the_reference_pair():
    measured = [measured_direction("question", "cnn->mlp", observed=0.4),
                measured_direction("reference", "cnn->resnet", observed=0.8)]
    _, directions = V.prediction2_arm(measured, passed(*measured))
    mine = next(d for d in directions if d["direction"] == "cnn->mlp" and d["question"] == "shares")
    assert mine["vs_reference"] == pytest.approx(-0.4 / 0.75)
    assert mine["reference_outcome"] == "less similar to the VGG than the ResNet is"
    alike = [measured_direction("question", "cnn->mlp"), measured_direction("reference", "cnn->resnet")]
    mine = next(d for d in V.prediction2_arm(alike, passed(*alike))[1] if d["direction"] == "cnn->mlp")
    assert mine["reference_outcome"] == "not distinguishable from the ResNet's similarity to the VGG"
    alone = V.prediction2_arm(measured[:1], passed(*measured))[1][0]
    assert alone["reference_outcome"] == "no reference pair to compare with"
    failed = passed(*measured) | {"cnn->resnet-b": False}
    mine = next(d for d in V.prediction2_arm(measured, failed)[1] if d["direction"] == "cnn->mlp")
    assert mine["reference_outcome"].startswith("not compared") and mine["vs_reference"] != mine["vs_reference"]
    assert mine["verdict"] != V.NOT_TESTABLE  # the comparator's failure leaves the question's own row decided


def test_prediction2_arm_without_a_ceiling_or_with_a_failed_gate_is_not_testable():
    m = measured_direction(ceiling=None)
    rows, (entry, _) = V.prediction2_arm([m], passed(m))
    assert "ceiling" not in {r["statistic"] for r in rows} and entry["ceiling_kind"] == "none"
    assert all(entry[k] != entry[k] for k in ("null_value", "ceiling", "ceiling_null", "span", "position",
                                                "position_low", "position_high"))  # NaN
    assert not any(k.startswith("position_vs_") for k in entry)
    assert (entry["verdict"], entry["reason"]) == (V.NOT_TESTABLE, "no ceiling")
    m = measured_direction()
    gates = passed(m) | {m.sae_ids[1]: False}
    entry = V.prediction2_arm([m], gates)[1][0]
    assert entry["gates_ok"] is False and entry["verdict"] == V.NOT_TESTABLE and "gates" in entry["reason"]
    assert V.prediction2_arm([m], {m.sae_ids[0]: True})[1][0]["gates_ok"] is False  # a missing gate has not passed


# ----------------------------------------------------------------------------- Prediction 1

STRONG = dict(delta=0.8, low=0.6, p=1e-4)


def test_am_gates_pass_and_each_one_can_fail():
    assert V.gates_passed(V.am_gates(32, 30, 0.1))
    assert [r["gate"] for r in V.am_gates(32, 12, 0.1) if not r["passed"]] == ["success share"]
    assert [r["gate"] for r in V.am_gates(10, 6, 0.1) if not r["passed"]] == ["successful images"]
    assert [r["gate"] for r in V.am_gates(32, 30, 0.8) if not r["passed"]] == ["saturated pixels"]
    assert not V.gates_passed(V.am_gates(0, 0, 0.0))


ALIKE = dict(delta=0.0, low=-0.2, high=0.2)  # the MLP's images against the CNN's, directly


def test_prediction1_every_outcome_is_reachable():
    near = dict(value=0.9, low=0.7, high=1.1)
    far = dict(value=0.1, low=-0.1, high=0.3)
    wide = dict(value=0.5, low=0.1, high=1.0)
    assert V.prediction1_comparison(True, STRONG, STRONG, near, ALIKE)[0] == V.SUPPORTED
    assert V.prediction1_comparison(True, STRONG, dict(delta=0.05, low=-0.2, p=0.4), far, ALIKE)[0] == \
        V.NOT_SUPPORTED
    assert V.prediction1_comparison(True, STRONG, STRONG, wide, ALIKE)[0] == V.INCONCLUSIVE
    # the MLP reaches the CNN's effect on average but does not beat its own null: not "supported"
    assert V.prediction1_comparison(True, STRONG, dict(delta=0.7, low=-0.1, p=0.2), near, ALIKE)[0] == \
        V.INCONCLUSIVE
    assert V.prediction1_comparison(False, STRONG, STRONG, near, ALIKE)[0] == V.NOT_TESTABLE


def test_prediction1_needs_the_mlps_images_near_the_cnns_in_absolute_terms():
    """Each family's gain over its own null alike, but the MLP's images repeat far less than the CNN's: the position
    alone would say supported."""
    near = dict(value=0.9, low=0.7, high=1.1)
    far_below = dict(delta=-0.97, low=-1.0, high=-0.93)
    result, reason = V.prediction1_comparison(True, STRONG, STRONG, near, far_below)
    assert result == V.NOT_SUPPORTED and "-0.97" in reason
    straddles = dict(delta=-0.5, low=-0.7, high=-0.3)
    assert V.prediction1_comparison(True, STRONG, STRONG, near, straddles)[0] == V.INCONCLUSIVE


def test_prediction1_needs_a_cnn_pattern_to_approximate():
    near = dict(value=0.9, low=0.7, high=1.1)
    for cnn in (dict(delta=0.8, low=0.6, p=0.2),       # not significant
                dict(delta=0.8, low=-0.05, p=1e-4),    # interval reaches 0
                dict(delta=0.1, low=0.02, p=1e-4)):    # significant but negligible
        assert V.prediction1_comparison(True, cnn, STRONG, near, ALIKE)[0] == V.NOT_TESTABLE


def test_the_dose_response_must_rise_and_never_fall():
    assert V.dose_response_monotone({"contrast": [0.0, 0.1, 0.3, 0.5], "on texture": [0.03, 0.02, 0.05]})[0]
    passed, reason = V.dose_response_monotone({"contrast": [0.0, 0.3, 0.2, 0.5]})
    assert not passed and "contrast falls by 0.100" in reason
    passed, reason = V.dose_response_monotone({"repeats": [0.0, 0.02, 0.05]})
    assert not passed and "rises by 0.050" in reason
    assert V.dose_response_monotone({"on texture": [0.03, 0.03, 0.04]})[0]  # a background needs no rise


CONTROLS_OK = (True, "the motif measure passed its known-answer controls")
CHANNELS_OK = dict(STRONG, high=0.9, gates_ok=True)


def test_prediction1_reads_the_primary_test_only_once_the_instrument_can_say_yes():
    primary = dict(verdict=V.SUPPORTED, reason="the MLP's images show motifs")
    assert V.prediction1(primary, CONTROLS_OK, CHANNELS_OK) == (V.SUPPORTED, primary["reason"])
    assert V.prediction1(dict(primary, verdict=V.NOT_SUPPORTED), CONTROLS_OK, CHANNELS_OK)[0] == V.NOT_SUPPORTED
    # the measure fails its known answers, the channel images fail their gates, or the measure misses their tiling
    failed = V.measure_controls_passed({"stamped": 0.05, "noise": 0.0}, {"stamped": "high", "noise": "low"})
    assert failed[0] is False and "stamped 0.050" in failed[1]
    assert V.prediction1(primary, failed, CHANNELS_OK) == (V.NOT_TESTABLE, failed[1])
    assert V.prediction1(primary, CONTROLS_OK, dict(CHANNELS_OK, gates_ok=False))[0] == V.NOT_TESTABLE
    verdict, reason = V.prediction1(primary, CONTROLS_OK, dict(CHANNELS_OK, delta=0.1, low=0.02))
    assert verdict == V.NOT_TESTABLE and "channel images" in reason


def test_the_measure_controls_need_every_high_control_high_and_every_low_one_low():
    expected = {"stamped": "high", "tiled": "high", "noise": "low"}
    assert V.measure_controls_passed({"stamped": 0.4, "tiled": 0.2, "noise": 0.0}, expected)[0]
    assert not V.measure_controls_passed({"stamped": 0.4, "tiled": 0.1, "noise": 0.0}, expected)[0]
    assert not V.measure_controls_passed({"stamped": 0.4, "tiled": 0.2, "noise": 0.15}, expected)[0]


def test_prediction1_rule_in_words_uses_the_thresholds():
    text = V.describe_prediction1(dict(V.PREDICTION1, min_position=0.37))
    assert "0.37" in text and "Cliff" in text and "phase-randomized" in text
    assert "0.15" in V.describe_prediction1() and "99%" in V.describe_am_gates()


def test_null_validity_and_the_strongest_valid_null():
    assert V.null_valid(V.MIN_ALIVE_SHARE_FOR_NULL) and not V.null_valid(V.MIN_ALIVE_SHARE_FOR_NULL - 0.01)
    values = {"a": 0.3, "b": 0.5, "c": 0.4}
    assert V.strongest_null(values, {"a": True, "b": False, "c": True}) == "c"
    assert V.strongest_null(values, {"a": False, "b": False, "c": False}) is None


def test_position_is_the_same_formula_for_numbers_and_replicates():
    assert V.position(0.3, 0.1, 0.5) == pytest.approx(0.5)
    reps = V.position(torch.tensor([0.3, 0.1]), torch.tensor([0.1, 0.1]), torch.tensor([0.5, 0.1]))
    assert reps[0].item() == pytest.approx(0.5) and reps[1].item() == 0.0  # a ceiling at the null: no division by 0
    assert V.position(0.2, 0.1, 0.1) == pytest.approx(0.1 / 1e-6)


def test_holm_families_hold_exactly_the_tests_of_each_verdict():
    rows = [dict(statistic="observed", valid=True),
            dict(statistic="null-full-shuffle", valid=True, p=0.01),
            dict(statistic="null-random-init", valid=False, p=0.001),  # an invalid null is not tested
            dict(statistic="null-conditional-shuffle", valid=True, p=0.02),
            dict(statistic="ceiling", valid=True)]
    V.adjust_prediction2(rows)
    # one family per question: "shares" holds the full shuffle alone (its random-init null is invalid), "beyond" the
    # conditional shuffle alone
    assert [r.get("p_holm") for r in rows] == [None, pytest.approx(0.01), None, pytest.approx(0.02), None]


def test_am_success_reads_the_gate_when_it_judges(monkeypatch):
    natural = torch.arange(100.0)[:, None].repeat(1, 2)
    assert V.am_success(torch.tensor([98.5, 50.0]), natural)[0].tolist() == [True, False]
    monkeypatch.setitem(V.AM_GATES, "success_quantile", 0.4)
    assert V.am_success(torch.tensor([98.5, 50.0]), natural)[0].tolist() == [True, True]
    # above the natural quantile but not above its own start image: no success
    assert V.am_success(torch.tensor([98.5, 50.0]), natural, torch.tensor([99.0, 10.0]))[0].tolist() == [False, True]


def test_a_disagreement_between_the_sae_and_the_dictionary_free_measure_is_a_finding():
    sae, free = V.PREDICTION2["deciding_arm"], V.PREDICTION2["dictionary_free_arm"]
    agree = {sae: (V.NOT_SUPPORTED, "x"), free: (V.NOT_SUPPORTED, "y")}
    assert V.measure_finding(agree) is None
    assert V.measure_finding({sae: (V.SUPPORTED, "x")}) is None  # no dictionary-free row: nothing to compare
    differ = V.measure_finding({sae: (V.NOT_SUPPORTED, "x"), free: (V.SUPPORTED, "y")})
    assert differ.startswith("the measures disagree") and "supported" in differ
    only = V.measure_finding({sae: (V.NOT_TESTABLE, "an SAE failed its gates"), free: (V.NOT_SUPPORTED, "y")})
    assert only.startswith("only the dictionary-free measure") and "failed its gates" in only
    alone = V.measure_finding({free: (V.SUPPORTED, "y")})  # a layer without SAEs
    assert alone.startswith("no SAEs are trained at this layer") and "reads supported (y)" in alone
    rows = study_rows()
    for r in rows:
        if r["arm"] == "l1" and r["comparison"] == "question":
            r["verdict"] = V.NOT_SUPPORTED
    linear = [dict(r, arm=free) for r in study_rows()]
    got = V.prediction2(rows + linear, "hidden", dict(ALL_SEEDS, **{free: (4, 4)}))["shares"]
    assert got["verdict"] == V.NOT_SUPPORTED and got["finding"].startswith("the measures disagree")


@pytest.mark.parametrize("cnn_low,position,expected", [
    (0.2, (0.8, 0.6, 1.0), V.SUPPORTED),
    (0.2, (0.2, 0.1, 0.4), V.NOT_SUPPORTED),
    (0.2, (0.5, 0.3, 0.7), V.INCONCLUSIVE),
    (0.0, (0.8, 0.6, 1.0), V.NOT_TESTABLE),
    (-0.1, (0.2, 0.1, 0.4), V.NOT_TESTABLE),
])
def test_the_shift_invariance_rule_reaches_every_outcome(cnn_low, position, expected):
    got, reason = V.shift_invariance_verdict(dict(value=cnn_low + 0.1, low=cnn_low, high=cnn_low + 0.2),
                                             dict(zip(("value", "low", "high"), position)))
    assert got == expected and reason


def test_every_rule_change_names_a_commit_or_a_marker_git_can_find():
    """The methods page's history reads each change's commit and date from git; a change not yet committed when it
    was written names a string its commit added to verdict.py (``git log -S`` finds it)."""
    import subprocess
    from pathlib import Path

    from helpers.answers import rule_history
    source = Path(V.__file__).read_text()
    for change in V.RULE_CHANGES:
        assert ("commit" in change) != ("marker" in change) and change["seen"] and change["change"]
        if "marker" in change:
            assert source.count(change["marker"]) >= 1, change["marker"]
    table = rule_history()
    for change in V.RULE_CHANGES:
        if "commit" not in change:
            continue
        known = subprocess.run(["git", "show", "-s", "--format=%cs", change["commit"]], capture_output=True,
                               text=True, cwd=Path(V.__file__).parents[1])
        # a clone without the history says so in words; one with it shows the commit beside git's date
        row = f"<td>{change['commit']}</td>\n      <td>{known.stdout.strip()}</td>"
        assert (row in table) if known.returncode == 0 else "not in this clone's history" in table


def test_a_rule_may_let_one_direction_decide_and_describe_the_other():
    """With ``deciding_directions`` set to one direction, the question follows that direction alone; by default
    (None) both must agree, and a disagreement is inconclusive."""
    rows = study_rows(question=(V.SUPPORTED, V.NOT_SUPPORTED))
    both = dict(V.PREDICTION2, deciding_directions=None)
    assert V.prediction2(rows, "hidden", ALL_SEEDS, rule=both)["shares"]["verdict"] == V.INCONCLUSIVE
    one = dict(V.PREDICTION2, deciding_directions=("cnn->mlp",))
    got = V.prediction2(rows, "hidden", ALL_SEEDS, rule=one)["shares"]
    assert got["verdict"] == V.SUPPORTED and "mlp->cnn: synthetic" in got["reason"]
    assert got["both_directions"] == V.INCONCLUSIVE  # what both directions together would say, reported beside
    assert V.prediction2(rows, "hidden", ALL_SEEDS, rule=dict(one, deciding_directions=("mlp->cnn",)))[
        "shares"]["verdict"] == V.NOT_SUPPORTED
    assert "decides (the other is described)" in V.describe_prediction2(dict(one, deciding_directions=("cnn->mlp",)))


def test_at_a_layer_without_saes_the_question_is_not_testable_and_the_linear_measure_is_the_finding():
    free = V.PREDICTION2["dictionary_free_arm"]
    linear = [dict(r, arm=free) for r in study_rows()]
    got = V.prediction2(linear, "mid", {free: (4, 4)}, powered=None)
    for q in V.QUESTIONS:
        assert got[q]["verdict"] == V.NOT_TESTABLE and "no l1 SAEs at this layer" in got[q]["reason"]
        assert got[q]["finding"].startswith("no SAEs are trained at this layer")
        assert set(got[q]["per_arm"]) == {free}


def test_the_rule_history_sets_this_runs_verdict_under_each_earlier_rule_beside_the_frozen_one():
    """Where a change names how to read the run under the rule before it (``earlier``), the table shows that verdict
    beside the frozen rule's; where the run no longer measures the earlier rule's inputs, it says so."""
    from helpers.answers import rule_history
    keys = {c.get("earlier") for c in V.RULE_CHANGES} - {None}
    assert keys == {"prediction1_without_direct", "prediction1_pooled", "prediction2_both_directions"}
    table = rule_history(earlier={"prediction2_both_directions": (V.INCONCLUSIVE, V.NOT_SUPPORTED)})
    assert "this run under the rule before" in table and "this run under the frozen rule" in table
    assert f"<td>{V.INCONCLUSIVE}</td>\n      <td>{V.NOT_SUPPORTED}</td>" in table
    assert "not measured by this run" in table
    assert "this run under the rule before" not in rule_history()


def test_the_answers_bold_a_verdict_only_where_it_is_a_test():
    """The landing page and the competence sentence mark a test in bold; a verdict whose rule is short of power reads
    in plain words, and Prediction 2's says "descriptive" (the matched pair's verdicts are descriptive at 2 seeds)."""
    from helpers.answers import AnswersPage
    page = object.__new__(AnswersPage)
    short = "descriptive: the rule's simulated power at these seeds falls short"
    page.am = dict(prediction1="not supported", reason="the direct δ is far below; " + short)
    page.conclusions = {"hidden": dict(prediction2="not supported", questions={"shares": dict(status=short)})}
    assert page.prediction1_words() == "not supported"
    assert page.prediction2_words("hidden") == "not supported (descriptive)"
    page.am["reason"] = "the position's upper bound is below 0.5"
    page.conclusions["hidden"]["questions"]["shares"]["status"] = "test"
    assert page.prediction1_words() == "**not supported**" and page.prediction2_words("hidden") == "**not supported**"


def test_the_answers_set_each_zero_beside_the_exploratory_one():
    """The question's zero is one random-init draw: the answers page gives this run's beside the freeze's exploratory
    level and the position at that level, (observed - exploratory zero) / span, in each direction."""
    from helpers import freeze
    from helpers.answers import AnswersPage
    page = object.__new__(AnswersPage)
    page.profile = freeze.load()["study"]["profile"]
    levels = freeze.load()["noise"]["prediction2"]["hidden"]
    row = dict(arm="l1", comparison="question", question="shares", observed=0.12, span=0.12, position=0.7)
    page.conclusions = {"hidden": dict(directions=[dict(row, direction="mlp->cnn", null_value=0.036)])}
    text = page.zero_draws()
    shifted = (0.12 - levels["reverse_null"]) / 0.12
    assert "MLP → VGG: zero 0.036 (exploratory " + f"{levels['reverse_null']:.3f}), position 0.70 here, " \
        f"{shifted:.2f} at the exploratory zero" in text and "changes no verdict" in text
