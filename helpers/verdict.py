"""Decision rules: result tables in, a verdict out.

The thresholds below were written down before the runs they judge. A later change to one is its own commit that
says why, never part of a re-run. Notebooks only render what these functions return; the book's methods page reads
the thresholds from here.

Every rule returns one of four verdicts:
  supported       the measurement clears every valid null and is close enough to its ceiling;
  not supported   the measurement is confidently far from its ceiling (or indistinguishable from a null);
  inconclusive    neither, or two arms that should agree do not;
  not testable    an instrument failed its quality gate, or no valid null or ceiling exists to compare against.
"""
import math

import torch

from helpers.stats import holm, interval

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTABLE = "supported", "not supported", "inconclusive", "not testable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTABLE)

# ----------------------------------------------------------------------------- the SAE instrument

# An SAE's output is compared only if it passes every gate, measured on held-out activations (the test images).
SAE_GATES = dict(
    max_dead_share=0.10,          # dead: fires on none of the held-out vectors
    min_explained_variance=0.70,  # of the layer's variance on held-out vectors
    max_accuracy_drop=0.05,       # test accuracy, original layer minus the layer replaced by the SAE's reconstruction
    l0_band=(0.67, 1.5),          # held-out L0 within this factor range of the target L0 both SAEs were trained to
    max_final_drift=0.10,         # converged: L0 and explained variance move by less than this (relative) between
                                  # the two halves of the last 20% of training
)
# A null whose SAE has fewer alive features than this share is marked invalid and not used: a near-empty dictionary
# cannot be compared with a full one by a best-match statistic.
MIN_ALIVE_SHARE_FOR_NULL = 0.5


def null_valid(alive_share):
    """Is a null's SAE full enough to compare with (at least ``MIN_ALIVE_SHARE_FOR_NULL`` of its features alive)?"""
    return alive_share >= MIN_ALIVE_SHARE_FOR_NULL


def sae_gates(metrics, target_l0, log=None, gates=SAE_GATES):
    """Check one SAE against the gates. ``metrics``: held-out metrics of ``sae.reconstruction_metrics`` plus
    ``accuracy_original`` and ``accuracy_spliced``; ``log``: its training log (list of dicts with l0 and
    explained_variance). Returns a list of dicts (gate, value, threshold, passed)."""
    dead_share = metrics["dead"] / metrics["n_features"]
    drop = metrics["accuracy_original"] - metrics["accuracy_spliced"]
    low, high = gates["l0_band"]
    rows = [dict(gate="dead share", value=dead_share, threshold=f"≤ {gates['max_dead_share']:g}",
                 passed=dead_share <= gates["max_dead_share"]),
            dict(gate="explained variance", value=metrics["explained_variance"],
                 threshold=f"≥ {gates['min_explained_variance']:g}",
                 passed=metrics["explained_variance"] >= gates["min_explained_variance"]),
            dict(gate="accuracy drop", value=drop, threshold=f"≤ {gates['max_accuracy_drop']:g}",
                 passed=drop <= gates["max_accuracy_drop"]),
            dict(gate="L0 / target", value=metrics["l0"] / target_l0, threshold=f"{low:g}–{high:g}",
                 passed=low <= metrics["l0"] / target_l0 <= high)]
    if log is not None:
        drift = final_drift(log)
        rows.append(dict(gate="final drift", value=drift, threshold=f"< {gates['max_final_drift']:g}",
                         passed=drift < gates["max_final_drift"]))
    return rows


def final_drift(log, window=0.2):
    """The larger relative change of L0 and of explained variance between the two halves of the last ``window``
    of a training log: a small number means training had converged. A log of fewer than two entries (a run
    shorter than ``log_every`` steps) cannot show convergence: infinite drift, so the gate fails."""
    if len(log) < 2:
        return float("inf")
    last = log[-max(2, round(len(log) * window)):]
    half = len(last) // 2
    drift = 0.0
    for key in ("l0", "explained_variance"):
        first = sum(r[key] for r in last[:half]) / half
        second = sum(r[key] for r in last[half:]) / (len(last) - half)
        drift = max(drift, abs(second - first) / max(abs(first), 1e-12))
    return drift


def gates_passed(rows):
    return all(r["passed"] for r in rows)


def all_passed(passed, keys):
    """Did every one of ``keys`` pass its gates (``passed``: {key: bool}; a missing key has not passed)?"""
    return all(passed.get(k, False) for k in keys)


# ----------------------------------------------------------------------------- the mid-depth layers

def mid_layer_candidates(cnn_layers, mlp_layers):
    """Which layers may form the study's mid-depth pair: the middle third of the CNN's convolutional layers, and
    the MLP's blocks before its last one (not the embedding). Returns (CNN indices, MLP indices)."""
    conv = [i for i, name in enumerate(cnn_layers) if name.startswith("features")]
    rows = conv[len(conv) // 3: max(len(conv) // 3 + 1, 2 * len(conv) // 3)]
    cols = list(range(1, max(2, len(mlp_layers) - 1)))
    return rows, cols


def reference_candidates(reference_layers):
    """The reference ResNet's layers that may stand beside the CNN's mid-depth layer: its residual blocks."""
    return [i for i, name in enumerate(reference_layers) if name.startswith("blocks")]


def best_aligned_pair(trained, nulls, rows, cols):
    """The (row, column) of the CKA map whose margin over the strongest null map is largest, among the candidate
    ``rows`` and ``cols`` (mid-depth layers): where the two families are most alike beyond what chance gives."""
    margin = trained - torch.stack(list(nulls)).max(0).values
    sub = margin[rows][:, cols]
    i, j = divmod(int(sub.argmax()), sub.shape[1])
    return rows[i], cols[j]


# ----------------------------------------------------------------------------- Prediction 2

# Prediction 2 ("the two dictionaries learn similar features") per SAE arm and matching direction, on the held-out
# best-match correlation:
PREDICTION2 = dict(
    alpha=0.05,         # family-wise error rate over the observed-vs-null tests of one comparison and arm (Holm)
    min_position=0.5,   # "similar" means at least halfway from the strongest valid null (0) to the ceiling (1):
                        # closer to two trained models of one family than to what chance alignment gives
    min_resolution=0.05,  # the ceiling must exceed its own null by this much, else the scale cannot resolve
)
# Where the MLP's verdict is read (written before the first run of this rule): against the ceiling, on the position
# scale above; the reference pair (VGG <-> ResNet) and the sanity control (VGG <-> VGG under a random linear map)
# are gates of the instrument, not the scale. Each must itself be judged "supported" by ``prediction2_direction``
# in both directions of the arm: an instrument that cannot say yes to them cannot say no to the MLP. The MLP's
# position as a share of the reference pair's is reported beside the verdict and does not decide it.
INSTRUMENT_CHECKS = ("sanity", "reference")


NULLS = ("null-conditional-shuffle", "null-full-shuffle", "null-random-init")


def strongest_null(values, valid):
    """The name of the highest valid null (``values``, ``valid``: {null name: value / bool}), or None."""
    names = [k for k in values if valid[k]]
    return max(names, key=lambda k: values[k]) if names else None


def position(observed, null, ceiling):
    """Prediction 2's position of an observation between a null (0) and the ceiling (1), for numbers or for
    bootstrap replicates (tensors). The span is kept above 1e-6, so a ceiling at the null gives a huge position
    rather than a division by zero (``prediction2_direction`` then finds the scale unresolved). The study passes
    (observed - its strongest valid null, 0, ceiling - the ceiling's own null): each compared with its matched
    baseline."""
    if isinstance(observed, torch.Tensor):
        return (observed - null) / (ceiling - null).clamp_min(1e-6)
    return (observed - null) / max(ceiling - null, 1e-6)


def adjust_prediction2(stats):
    """Holm's adjustment over the family of one comparison's tests in one arm: every observed-vs-null row (both
    directions) whose null is valid. Sets ``p_holm`` on those rows, in place."""
    tests = [r for r in stats if r["statistic"] in NULLS and r["valid"]]
    for r, p in zip(tests, holm([r["p"] for r in tests])):
        r["p_holm"] = p


def combine(verdicts):
    """One verdict from several that must agree: any 'not testable' makes it not testable; agreement is kept;
    anything else is inconclusive."""
    verdicts = list(verdicts)
    if not verdicts or NOT_TESTABLE in verdicts:
        return NOT_TESTABLE
    return verdicts[0] if all(v == verdicts[0] for v in verdicts) else INCONCLUSIVE


def prediction2_direction(gates_ok, nulls, position, span, rule=PREDICTION2):
    """The verdict for one comparison, arm and matching direction: are the two sides' dictionaries similar?

    gates_ok: every SAE behind the observation passed its gates.
    nulls: list of dicts with ``valid`` (bool), ``p_holm`` (Holm-adjusted p of observed > null) and ``diff_low``
        (lower confidence bound of observed minus null).
    position: dict(value, low, high): (observed - strongest valid null) / (ceiling - the ceiling's own null), with
        its confidence interval.
    span: the ceiling minus its own null (NaN when there is no ceiling).
    Returns (verdict, reason).
    """
    if not gates_ok:
        return NOT_TESTABLE, "an SAE failed its quality gates"
    valid = [n for n in nulls if n["valid"]]
    if not valid:
        return NOT_TESTABLE, "no valid null"
    if not span > rule["min_resolution"]:
        return NOT_TESTABLE, (f"the ceiling exceeds its own null by {span:.3f}, not more than "
                              f"{rule['min_resolution']}" if span == span else "no ceiling")
    beats = all(n["p_holm"] < rule["alpha"] and n["diff_low"] > 0 for n in valid)
    if beats and position["low"] >= rule["min_position"]:
        return SUPPORTED, "above every valid null, and the position's lower bound reaches the threshold"
    if position["high"] < rule["min_position"]:
        return NOT_SUPPORTED, "the position's upper bound is below the threshold"
    return INCONCLUSIVE, "the position's interval contains the threshold, or a null is not beaten"


def prediction2_arm(measured, gates_ok):
    """Every decision on one SAE arm's Prediction 2 measurements (the ``compare.DirectionMeasurement`` records of
    ``compare.prediction2_arm``); ``gates_ok``: {SAE id: passed its gates}. Returns (statistics rows, direction rows).

    A statistics row is the measured row with its validity (``prediction2_row``); Holm's adjustment runs over each
    comparison's valid nulls (``adjust_prediction2``); a direction row (``prediction2_entry``) holds the strongest
    valid null, the position with its interval, the gates, and the verdict with its reason."""
    rows = [prediction2_row(m, statistic) for m in measured for statistic in m.statistics]
    for comparison in dict.fromkeys(m.comparison for m in measured):
        adjust_prediction2([r for r in rows if r["comparison"] == comparison])
    directions = []
    for m in measured:
        own = {r["statistic"]: r for r in rows if (r["comparison"], r["direction"]) == (m.comparison, m.direction)}
        directions.append(prediction2_entry(m, own, gates_ok))
    return rows, directions


def prediction2_row(measured, statistic):
    """One statistics row: the measured row of ``statistic`` and whether it may be used (``valid``): a random-init
    null only if its SAE is full enough (``null_valid``); the observation, the shuffle nulls and the ceiling always."""
    share = measured.null_alive_share.get(statistic)
    return dict(comparison=measured.comparison, arm=measured.arm, direction=measured.direction, statistic=statistic,
                **measured.statistics[statistic], valid=bool(share is None or null_valid(share)))


def prediction2_entry(measured, rows, gates_ok):
    """One direction's row from its statistics ``rows`` ({statistic: row}, Holm-adjusted): the observation, whether
    every SAE behind it passed its gates, the strongest valid null, the position (``prediction2_position``), the
    per-feature diagnostics, and the verdict with its reason (``prediction2_direction``)."""
    nulls = {k: r for k, r in rows.items() if k in NULLS}
    entry = dict(comparison=measured.comparison, arm=measured.arm, direction=measured.direction,
                 observed=rows["observed"]["value"], gates_ok=all_passed(gates_ok, measured.sae_ids),
                 strongest_null=strongest_null({k: r["value"] for k, r in nulls.items()},
                                               {k: r["valid"] for k, r in nulls.items()}),
                 ceiling_kind=measured.ceiling_kind)
    entry.update(prediction2_position(rows, measured.replicates, entry["strongest_null"]), **measured.diagnostics)
    entry["verdict"], entry["reason"] = prediction2_direction(
        entry["gates_ok"], [dict(valid=r["valid"], p_holm=r.get("p_holm", 1.0), diff_low=r["diff_low"])
                            for r in nulls.values()],
        dict(value=entry["position"], low=entry["position_low"], high=entry["position_high"]), entry["span"])
    return entry


def prediction2_position(rows, replicates, strongest):
    """A direction's place on the position scale: the ``strongest`` valid null's value, the ceiling and its null,
    the span between them, the position (``position``) with the interval of its bootstrap ``replicates``
    ({statistic: (B,)}), and the position against each null in turn (the front page's "relative to what"). All NaN
    (and no position against each null) without a valid null or a ceiling."""
    if strongest is None or "ceiling" not in rows:
        return dict.fromkeys(("null_value", "ceiling", "ceiling_null", "span", "position", "position_low",
                              "position_high"), math.nan)
    observed, null = rows["observed"]["value"], rows[strongest]["value"]
    ceiling, ceiling_null = rows["ceiling"]["value"], rows["ceiling-null"]["value"]
    low, high = interval(position(replicates["observed"] - replicates[strongest], 0.0,
                                  replicates["ceiling"] - replicates["ceiling-null"]))
    span = ceiling - ceiling_null
    out = dict(null_value=null, ceiling=ceiling, ceiling_null=ceiling_null, span=span, position_low=low,
               position_high=high, position=position(observed - null, 0.0, span))
    out.update({f"position_vs_{k.removeprefix('null-')}": position(observed - r["value"], 0.0, span)
                for k, r in rows.items() if k in NULLS})
    return out


def instrument_check(directions, arm, comparison):
    """Does the instrument resolve ``comparison`` (a control with a known answer: similar) in ``arm``? Returns
    (passed, reason); a comparison the profile does not have passes with that said (the reference ResNet is not
    trained for the published checkpoints)."""
    rows = [d for d in directions if d["arm"] == arm and d["comparison"] == comparison]
    if not rows:
        return True, f"no {comparison} comparison in this profile"
    failed = [d for d in rows if d["verdict"] != SUPPORTED]
    if failed:
        return False, "; ".join(f"{d['direction']}: {d['verdict']} ({d['reason']})" for d in failed)
    return True, "supported in both directions"


def prediction2(directions, rule=PREDICTION2):
    """The study's verdict from the per-(comparison, arm, direction) rows, each with ``comparison``, ``arm``,
    ``direction``, ``verdict`` and ``reason``.

    In each arm the instrument checks (``INSTRUMENT_CHECKS``) must each be supported in both directions, else the
    arm is not testable, with the reason. Where they are, the arm's verdict is the question's (VGG <-> MLP) with
    both directions agreeing (``combine``). The L1 (Bricken) and TopK arms must agree, else inconclusive.
    Returns (verdict, {arm: verdict}, {arm: reason})."""
    arms = sorted({d["arm"] for d in directions}, key=[d["arm"] for d in directions].index)
    per_arm, reasons = {}, {}
    for arm in arms:
        checks = {c: instrument_check(directions, arm, c) for c in INSTRUMENT_CHECKS}
        failed = {c: why for c, (ok, why) in checks.items() if not ok}
        if failed:
            per_arm[arm] = NOT_TESTABLE
            reasons[arm] = "the instrument does not resolve its known case: " + "; ".join(
                f"{c} ({why})" for c, why in failed.items())
            continue
        question = [d for d in directions if d["arm"] == arm and d["comparison"] == "question"]
        per_arm[arm] = combine(d["verdict"] for d in question)
        reasons[arm] = "; ".join(f"{d['direction']}: {d['reason']}" for d in question)
    return combine(per_arm.values()), per_arm, reasons


# ----------------------------------------------------------------------------- Prediction 1 (activation maximization)

# An AM group (the images of one objective kind on one network, one regularization setting) is scored only if it
# passes these gates. Success: the image drives its target above the target's 99th percentile on natural images.
AM_GATES = dict(
    success_quantile=0.99,     # of the target's values on natural test images
    min_success_share=0.5,     # of the group's images that succeed
    min_successful_images=8,   # fewer cannot give an effect size with a useful interval
    max_saturated_share=0.5,   # pixels within 1/255 of 0 or 1: a mostly clipped image shows colour, not pattern
)

PREDICTION1 = dict(
    alpha=0.05,                 # one-sided level of each pre-registered test (the premise, the MLP over its null)
    min_position=0.5,           # "shows the CNN's patterns" means at least half the CNN's effect over its own null
    min_reference_effect=0.147,  # the CNN's Cliff's δ over its null must reach this (Romano et al.'s bound of a
                                 # negligible effect), else there is no CNN pattern to approximate
    # The primary test, fixed before the run: shift-pooled last-hidden-layer neurons, the motif measure, no penalty.
    # Every other objective, measure and setting is a robustness check, reported and never a veto.
    objective="pooled",
    measure="motif",
    setting="plain",
)

# The primary measure's known answers (``repetition.measure_controls``): each "high" control's median score must reach
# min_high and each "low" control's stay at or below max_low, else the measure cannot say yes (or says it to anything).
MEASURE_CONTROLS = dict(min_high=0.15, max_low=0.10)


def am_gates(n_images, n_successful, saturated_share, gates=AM_GATES):
    """Check one AM group. Returns a list of dicts (gate, value, threshold, passed), as ``sae_gates``."""
    share = n_successful / n_images if n_images else 0.0
    return [dict(gate="success share", value=share, threshold=f"≥ {gates['min_success_share']:g}",
                 passed=share >= gates["min_success_share"]),
            dict(gate="successful images", value=n_successful, threshold=f"≥ {gates['min_successful_images']}",
                 passed=n_successful >= gates["min_successful_images"]),
            dict(gate="saturated pixels", value=saturated_share, threshold=f"≤ {gates['max_saturated_share']:g}",
                 passed=saturated_share <= gates["max_saturated_share"])]


# Objective kinds that exist in both families with the same meaning, compared family against family: shift-pooled
# last-hidden-layer neurons (the primary), class logits and earlier-layer neurons. The CNN's channel objective (a mean
# over positions, which rewards tiling) is the measure's positive control on real AM images; the MLP's residual-stream
# coordinates (not a privileged basis) are reported apart.
PREDICTION1_OBJECTIVES = ("pooled", "classes", "earlier")


def am_success(final_values, natural_values, start_values=None, quantile=None):
    """Did each AM image drive its target above the target's ``quantile`` on natural images, and above its own start
    image's value?

    final_values: (N,) each image's objective value for its own target; natural_values: (M, N) the same targets on
    M natural images; start_values: (N,) the values on the optimizer's start images (None: not checked);
    ``quantile``: by default the gate's (``AM_GATES``), read when judging, so a changed gate re-judges cached values.
    Returns (success (N,) bool, threshold (N,))."""
    quantile = AM_GATES["success_quantile"] if quantile is None else quantile
    threshold = torch.quantile(torch.as_tensor(natural_values).float(), quantile, dim=0)
    final = torch.as_tensor(final_values).float()
    success = final > threshold
    if start_values is not None:
        success &= final > torch.as_tensor(start_values).float()
    return success, threshold


def measure_controls_passed(medians, expected, rule=MEASURE_CONTROLS):
    """The primary measure on its known answers. medians: {control: median score}; expected: {control: "high" or
    "low"}. Returns (passed, reason)."""
    failed = [f"{name} {medians[name]:.3f} (expected ≥ {rule['min_high']:g})" for name, e in expected.items()
              if e == "high" and not medians[name] >= rule["min_high"]]
    failed += [f"{name} {medians[name]:.3f} (expected ≤ {rule['max_low']:g})" for name, e in expected.items()
               if e == "low" and not medians[name] <= rule["max_low"]]
    if failed:
        return False, "the motif measure failed its known-answer controls: " + "; ".join(failed)
    return True, "the motif measure passed its known-answer controls"


def cnn_pattern(cnn, rule=PREDICTION1):
    """Do the CNN's images repeat beyond its null (p < alpha, interval above 0, δ at least the reference)?"""
    return cnn["p"] < rule["alpha"] and cnn["low"] > 0 and cnn["delta"] >= rule["min_reference_effect"]


def prediction1_comparison(gates_ok, cnn, mlp, position, rule=PREDICTION1):
    """The verdict for one objective kind, measure and setting (the primary one, or a robustness check).

    gates_ok: every AM group behind the comparison (trained and random-init, both families) passed its gates.
    cnn, mlp: dicts with ``delta`` (Cliff's δ of the trained network's scores over its random-init null's),
        ``low`` (its lower confidence bound) and ``p`` (one-sided p of trained > null).
    position: dict(value, low, high): the MLP's δ divided by the CNN's, with its confidence interval (the test of
        the MLP against the CNN).
    Returns (verdict, reason).
    """
    if not gates_ok:
        return NOT_TESTABLE, "an AM group failed its quality gates"
    if not cnn_pattern(cnn, rule):
        return NOT_TESTABLE, (f"the CNN's images do not show recurring motifs beyond its random-init null by at "
                              f"least δ = {rule['min_reference_effect']} (nothing for the MLP to approximate)")
    mlp_beats = mlp["p"] < rule["alpha"] and mlp["low"] > 0
    if mlp_beats and position["low"] >= rule["min_position"]:
        return SUPPORTED, "the MLP's images show motifs beyond its null, by at least the threshold share of the CNN's"
    if position["high"] < rule["min_position"]:
        return NOT_SUPPORTED, "the MLP's effect is confidently below the threshold share of the CNN's"
    return INCONCLUSIVE, "the position's interval contains the threshold, or the MLP does not beat its null"


def prediction1(primary, controls, channel_control, rule=PREDICTION1):
    """Prediction 1's verdict from its primary comparison (a row of ``prediction1_comparison`` with ``verdict`` and
    ``reason``), once the instrument is shown able to say yes: ``controls`` = (passed, reason) of
    ``measure_controls_passed``, and ``channel_control`` the CNN's channel images' effect over their null on the
    primary measure (they tile visibly: a measure that misses them cannot see the CNN's patterns), with its gates
    (``gates_ok``). Returns (verdict, reason)."""
    passed, reason = controls
    if not passed:
        return NOT_TESTABLE, reason
    if not channel_control["gates_ok"]:
        return NOT_TESTABLE, "the CNN's channel images (the measure's positive control) failed their quality gates"
    if not cnn_pattern(channel_control, rule):
        return NOT_TESTABLE, (f"the motif measure does not find the CNN's tiling channel images above their "
                              f"random-init null (δ {channel_control['delta']:.2f}, lower bound "
                              f"{channel_control['low']:.2f}, p {channel_control['p']:.3g})")
    return primary["verdict"], primary["reason"]


# ----------------------------------------------------------------------------- the rules in words (for the book)

def describe_sae_gates(gates=SAE_GATES):
    low, high = gates["l0_band"]
    return (f"Every SAE is checked on the held-out test images before any comparison uses it: dead features (firing on "
            f"none of them) at most {gates['max_dead_share']:.0%} of the dictionary; explained variance at least "
            f"{gates['min_explained_variance']:g}; test accuracy with the layer replaced by the reconstruction at most "
            f"{gates['max_accuracy_drop']:g} below the original; held-out L0 within {low:g}–{high:g} times the "
            f"target; and training converged (L0 and explained variance move by less than "
            f"{gates['max_final_drift']:.0%} between the two halves of the last 20% of steps). A failed gate is "
            f"reported and makes every comparison that needs the SAE *not testable*. A null's SAE (on a randomly "
            f"initialized network) is used only if at least {MIN_ALIVE_SHARE_FOR_NULL:.0%} of its features fire; "
            f"otherwise that null is marked invalid.")


def describe_prediction2(rule=PREDICTION2):
    return (f"Four comparisons go through the same statistics: the question (VGG against the MLP); the reference "
            f"pair (VGG against a ResNet trained with the same recipe and seeds: two CNN architectures); the ResNet "
            f"against the MLP (reported beside); and the sanity control (VGG against its own layer under a random "
            f"invertible linear map, given fresh SAEs: the same features in another basis). For each SAE arm and "
            f"direction, the held-out best-match correlation (each feature's partner chosen on half of the test "
            f"images, their correlation read on the other half, averaged over model seeds and SAE seeds) is compared "
            f"with three nulls: images shuffled within (class, both models' predicted classes), images shuffled, and "
            f"the SAE of a randomly initialized network. The *ceiling* is the agreement of two training seeds of the "
            f"matched family (with one model per family, two SAE seeds of it), with its own conditional-shuffle "
            f"null. *Position* = (observed − strongest valid null) / (ceiling − the ceiling's null): each is measured "
            f"beyond what class and both models' predictions share. Intervals are bootstrap 95% intervals over "
            f"images, model seeds and SAE seeds; p-values are exact permutation p-values (never below 1/(R+1)), "
            f"Holm-adjusted over each comparison's tests. A comparison is **supported** (similar) when it exceeds "
            f"every valid null (Holm p < {rule['alpha']:g} and the interval of the difference above 0) and the "
            f"position's lower bound is at least {rule['min_position']:g}; **not supported** when the position's "
            f"upper bound is below {rule['min_position']:g}; **not testable** when an SAE failed a gate, no null is "
            f"valid, or the ceiling exceeds its null by no more than {rule['min_resolution']:g}; otherwise "
            f"**inconclusive**. The MLP is judged only where the instrument resolves: in each arm the sanity "
            f"control and the reference pair must both be supported in both directions, else that arm is *not "
            f"testable*. The MLP's verdict is read against the ceiling; its position as a share of the reference "
            f"pair's is reported beside it. Both directions and both arms (L1 and TopK) must agree; disagreement is "
            f"inconclusive.")


def describe_am_gates(gates=AM_GATES):
    return (f"An activation-maximization image *succeeds* when it drives its target above the target's "
            f"{gates['success_quantile']:.0%} quantile on natural test images; only successful images are scored. "
            f"A group of images (one objective kind, one network, one regularization setting) is used only if at "
            f"least {gates['min_success_share']:.0%} of its images, and at least {gates['min_successful_images']}, "
            f"succeed, and at most {gates['max_saturated_share']:.0%} of its pixels are saturated (within 1/255 of 0 "
            f"or 1). A failed gate is reported and makes the comparisons that need the group *not testable*.")


def describe_prediction1(rule=PREDICTION1, controls=MEASURE_CONTROLS):
    return (
        f"**The primary test.** The objective: single neurons of each network's last hidden layer (the CNN's "
        f"classifier neurons, the MLP's last block's hidden neurons; before their nonlinearity), each averaged over "
        f"16 circularly shifted copies of the image, so that the image must drive the neuron wherever its content "
        f"sits. The measure: *motif*, each image's patch self-similarity minus that of its phase-randomized "
        f"surrogates (same power spectrum, motifs destroyed). No penalty. Each family's effect is Cliff's δ of its "
        f"trained network's successful images over those of a randomly initialized network of the same "
        f"architecture, with a bootstrap 95% interval and a one-sided Mann-Whitney p-value; *position* = the MLP's δ "
        f"/ the CNN's δ, with the interval of the ratio of their bootstrap replicates. "
        f"**The instrument first.** The measure must score its known answers right (a motif stamped at irregular "
        f"positions and a tiling at least {controls['min_high']:g}; the same stamped images phase-randomized, "
        f"smooth blobs, natural images and the optimizer's start images at most {controls['max_low']:g}, by their "
        f"medians), and must find the CNN's channel images (whole-channel means, which tile visibly) above their "
        f"null by the premise's test below; else Prediction 1 is **not testable**. "
        f"**The rule.** **Not testable**: a group behind the primary test failed a gate, or the CNN's images do not "
        f"show motifs beyond its null (p < {rule['alpha']:g}, interval above 0 and δ ≥ "
        f"{rule['min_reference_effect']:g}: the premise). **Supported**: the MLP's images beat its null (same test "
        f"without the δ floor) and the position's lower bound is at least {rule['min_position']:g}. **Not "
        f"supported**: the position's upper bound is below {rule['min_position']:g}. Otherwise **inconclusive**. "
        f"The same rule on the other objectives (class logits, earlier-layer neurons), the two spectral measures "
        f"and the second setting (a contrast penalty on each target's natural-image scale) is reported as a "
        f"robustness check, not a veto."
    )
