"""Pre-registration as code. ``FREEZE.json`` at the repository's root, committed on main before any confirmatory
training, fixes everything the confirmatory run's verdicts depend on: the rules' constants and the primary test of
each prediction, the layer table, the profile's settings and seed lists, the interval method, the noise the rules'
power is simulated at (measured on the exploratory runs, never on the confirmatory data) and the frozen rules'
verdicts on synthetic tables drawn at that noise.

``record`` builds the file's content from the code and the frozen noise; ``mismatches`` compares the file with it (a
test runs it, so a change to a constant, a layer or a rule's behaviour after the freeze fails the tests);
``digest`` is the file's hash, which every results record stores."""
import dataclasses
import hashlib
import json
import math
from pathlib import Path

from helpers import compare, power, profiles, verdict
from helpers.paths import ROOT, write_json

FREEZE_PATH = ROOT / "FREEZE.json"
# Simulated studies per planting whose verdicts the file pins: enough that every rule decides several ways, few
# enough that the test recomputes them in seconds.
SYNTHETIC_STUDIES = 12
INTERVAL_METHOD = ("percentile intervals (95%) of a hierarchical bootstrap: model seeds, then SAE or AM seeds within "
                   "each, then images (Poisson weights); a ceiling's pairs of seeds resampled through their seeds")


def canonical(obj):
    """``obj`` as JSON reads it back (tuples as lists, keys as strings): what the file holds."""
    return json.loads(json.dumps(obj, sort_keys=True, default=lambda o: dataclasses.asdict(o)))


def rules():
    """Every constant a verdict reads, and the primaries."""
    return canonical(dict(
        prediction1=verdict.PREDICTION1, prediction1_objectives=verdict.PREDICTION1_OBJECTIVES,
        prediction2=verdict.PREDICTION2, conditional_layers=verdict.CONDITIONAL_LAYERS,
        primaries=verdict.PRIMARIES, secondary_families=verdict.SECONDARY_FAMILIES,
        shift_invariance=verdict.SHIFT_INVARIANCE, sae_gates=verdict.SAE_GATES, am_gates=verdict.AM_GATES,
        measure_controls=verdict.MEASURE_CONTROLS, dose_response=verdict.DOSE_RESPONSE,
        min_alive_share_for_null=verdict.MIN_ALIVE_SHARE_FOR_NULL, reproducible=compare.REPRODUCIBLE,
        min_firing_images=compare.MIN_FIRING_IMAGES, power_required=power.REQUIRED,
        planted=dict(prediction2=power.PLANTED, motif=power.PLANTED_MOTIF, gain=power.PLANTED_GAIN)))


def study(profile):
    """The profile as the run uses it: its settings, seed lists and layer table."""
    p = profiles.get(profile)
    return canonical(dict(
        profile=profile, models=p.models, training=p.training, am=p.am, sae=p.sae, compare=p.compare,
        layer_arms=p.layer_arms, layer_steps=p.layer_steps, layer_table=profiles.layer_table(profile),
        seeds=dict(model=p.model_seeds, sae=p.sae_seeds, am=p.am.am_seeds,
                   scale_models={m: p.seeds_of(m) for m in p.scale_models})))


def synthetic_verdicts(profile, noise, studies=SYNTHETIC_STUDIES):
    """The rules' verdicts, with each interval, on synthetic studies drawn at the frozen ``noise`` (the file's
    "noise": {"prediction2": {layer: Noise fields}, "prediction1": MotifNoise fields, "shift_invariance": {layer:
    GainNoise fields}}) at the profile's seeds, through the real verdict functions (``helpers.power``)."""
    p = profiles.get(profile)
    n = len(p.model_seeds)

    def pinned(found):
        decided, (low, high) = found[0], found[-1]
        return [decided, round(low, 4), round(high, 4)]
    out = {"prediction2": {layer: {name: [pinned(power.simulate_study(
        where, n, power.Noise(**levels), len(p.sae_seeds_of("l1")), layer=layer, seed=i))
        for i in range(studies)] for name, where in power.PLANTED.items()} for layer, levels in
        noise["prediction2"].items()}}
    motif = power.MotifNoise(**noise["prediction1"])
    out["prediction1"] = {name: [pinned(power.simulate_motifs(name, n, len(p.am.am_seeds), motif, seed=i))
                                 for i in range(studies)] for name in power.PLANTED_MOTIF}
    out["shift_invariance"] = {layer: {name: [pinned(power.simulate_gains(where, n, power.GainNoise(**levels),
                                                                          seed=i)) for i in range(studies)]
                                       for name, where in power.PLANTED_GAIN.items()}
                               for layer, levels in noise["shift_invariance"].items()}
    return canonical(out)


def record(profile, noise, studies=SYNTHETIC_STUDIES, synthetic=True):
    """The freeze file's content, from the code and the frozen ``noise``; ``synthetic=False`` leaves out the rules'
    verdicts on synthetic studies (a minute of simulation)."""
    out = dict(rules=rules(), study=study(profile), interval_method=INTERVAL_METHOD, noise=canonical(noise))
    if synthetic:
        out["synthetic_verdicts"] = synthetic_verdicts(profile, noise, studies)
    return out


def write(profile, noise, path=FREEZE_PATH):
    write_json(path, record(profile, noise))


# The noise fields that are spreads (SDs, failure rates): where several exploratory runs measured them, the freeze
# takes the largest, so the rule's power is simulated at the noisier run's; levels come from the first run given.
SPREADS = dict(prediction2=("between_seeds", "between_sae_seeds", "images", "gate_failure"),
               prediction1=("model_seeds", "am_seeds", "images"), shift_invariance=("cnn_seeds", "mlp_seeds", "blocks"))


def exploratory_noise(folders, profile):
    """The noise to freeze, from exploratory runs' results folders (``Data/results/<profile>``; the first run's
    levels, each spread the largest over the runs, ``SPREADS``): per kind as ``run_noise`` reads one run."""
    out = _merged([run_noise(folder, profile) for folder in folders])
    # each competence-matched profile's own noise (its CNNs differ), from its folder beside the base's where a run
    # has one
    out["matched"] = {}
    for m in profiles.matched_profiles(profile):
        found = [Path(f).parent / m for f in folders if (Path(f).parent / m / "am_power.csv").exists()]
        if found:
            out["matched"][m] = _merged([run_noise(folder, m) for folder in found])
    out["sources"] = [str(f) for f in folders]
    return out


def _merged(runs):
    """One noise from several runs': the first run's levels, each spread the largest (``SPREADS``)."""
    out = runs[0]
    for kind, fields in SPREADS.items():
        for key, levels in (out[kind].items() if kind != "prediction1" else [(None, out[kind])]):
            others = [r[kind] if key is None else r[kind].get(key) for r in runs[1:]]
            for field in fields:
                levels[field] = max([levels[field], *(o[field] for o in others if o)])
    out["prediction1"]["per_cell"] = min(r["prediction1"]["per_cell"] for r in runs)
    return out


def run_noise(results, profile):
    """One exploratory run's noise, as its pages recorded it: Prediction 2's per layer from its comparison pages
    (``power.noise_from``; a layer without one is left out), Prediction 1's from ``am_power.csv``'s noise columns
    (``power.motif_noise``), shift invariance's per layer pair from the run's ``shift_invariance.csv``
    (``power.gain_noise``), each at the upper end of its estimate as the pages used it."""
    import pandas as pd

    from helpers import invariance
    results = Path(results)
    missing = [n for n in ("am_power.csv", "shift_invariance.csv") if not (results / n).exists()]
    if missing:
        raise FileNotFoundError(f"{results} lacks {', '.join(missing)}: point --results at a finished exploratory "
                                f"run's results folder (Data/results/<profile>)")
    p2 = {}
    for layer in profiles.STUDY_LAYERS:
        path = results / f"conclusions_{layer}.json"
        found = json.loads(path.read_text()) if path.exists() else {}
        if found.get("profile", profile) != profile:
            raise ValueError(f"{path} is profile {found['profile']!r}'s, not {profile!r}: pass that profile's "
                             f"results folder")
        if found.get("noise"):
            p2[layer] = found["noise"]
    am = pd.read_csv(results / "am_power.csv").iloc[0]
    p1 = {k.removeprefix("noise_"): int(v) if k == "noise_per_cell" else float(v) for k, v in am.items()
          if k.startswith("noise_")}
    table = pd.read_csv(results / "shift_invariance.csv")
    gains = invariance.training_gains(table[table.layer != "pixels"])
    shift = {layer: dataclasses.asdict(power.gain_noise(gains, {f: row[f]["layer"] for f in ("cnn", "mlp")}))
             for layer, row in profiles.layer_table(profile).items()}
    return dict(prediction2=p2, prediction1=p1, shift_invariance=shift)


def main(argv=None):
    """``python -m helpers.freeze --profile cpu --results RUN [RUN ...]``: write ``FREEZE.json`` from the code and
    exploratory runs' noise; ``--check``: list where the code has moved from the file."""
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default="cpu", choices=profiles.STUDY_PROFILES)
    parser.add_argument("--results", nargs="+", help="exploratory runs' results folders, whose noise the freeze "
                        "fixes (the first run's levels, the largest spreads)")
    parser.add_argument("--check", action="store_true", help="compare FREEZE.json with the code instead")
    args = parser.parse_args(argv)
    if args.check:
        found = mismatches()
        print("\n".join(found) or "FREEZE.json matches the code")
        return 1 if found else 0
    if not args.results:
        parser.error("--results is required to write the freeze")
    write(args.profile, exploratory_noise(args.results, args.profile))
    print(f"wrote {FREEZE_PATH} ({digest()})")
    return 0


def load(path=FREEZE_PATH):
    """The freeze file's content, or None before the freeze."""
    return json.loads(path.read_text()) if path.exists() else None


def mismatches(path=FREEZE_PATH, synthetic=True):
    """Where the code has moved from the freeze file: the sections (rules, study, interval method, synthetic
    verdicts) whose content differs, each with the first differing key. Empty when they agree. ``synthetic=False``
    leaves out the synthetic verdicts (a minute of simulation; the tests check them) for a quick check."""
    frozen = load(path)
    if frozen is None:
        raise FileNotFoundError(f"no freeze file at {path}: write it with helpers.freeze.write(profile, noise)")
    studies = len(next(iter(frozen["synthetic_verdicts"]["prediction1"].values())))
    now = record(frozen["study"]["profile"], frozen["noise"], studies, synthetic)
    out = []
    for section in now:
        tolerance = SYNTHETIC_TOLERANCE if section == "synthetic_verdicts" else 0.0
        found = _first_difference(frozen.get(section), now[section], tolerance)
        if found:
            out.append(f"{section}: {found}")
    return out


# The synthetic verdicts' interval bounds are compared within this: another CPU's vector units sum the bootstrap in
# another order (float32 differences near 1e-7), which can move a bound rounded to 4 digits by one in the last. A
# rule's behaviour that changes moves a verdict or a bound by far more.
SYNTHETIC_TOLERANCE = 2e-4


def _first_difference(a, b, tolerance=0.0, where=""):
    """The first key path where ``a`` and ``b`` differ ("path: frozen a, now b"), numbers within ``tolerance``
    counting as equal; None where they agree."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), tolerance, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, tolerance, f"{where}[{i}]")
            if found:
                return found
        return None
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if isinstance(a, bool) != isinstance(b, bool):  # True == 1 in Python, not in a rule's constants
        return f"{where.lstrip('.') or 'value'}: frozen {a!r}, now {b!r}"
    if a == b or (numbers and (abs(a - b) <= tolerance or (math.isnan(a) and math.isnan(b)))):
        return None
    return f"{where.lstrip('.') or 'value'}: frozen {a!r}, now {b!r}"


def frozen_noise(kind, profile, layer=None, path=FREEZE_PATH):
    """The noise the freeze fixed for ``kind`` ("prediction2" and "shift_invariance" per ``layer``, "prediction1"),
    as its ``helpers.power`` class, when the freeze is ``profile``'s or its base's (a competence-matched profile's
    own exploratory noise, ``noise["matched"]``); else None (before the freeze, or another profile's pages: their
    power is simulated at their own run's noise, and their verdicts say so)."""
    return power_noise(kind, profile, lambda: None, layer, path)


def power_noise(kind, profile, measured, layer=None, path=FREEZE_PATH):
    """The noise a page simulates a rule's power at: once ``profile`` is frozen, the freeze's (``frozen_noise``;
    None where the freeze holds none for ``layer``, so the power is undefined, never the run's own); before the
    freeze, ``measured()``, the run's own noise."""
    frozen = load(path)
    return _frozen_levels(frozen, kind, profile, layer) if _freezes(frozen, profile) else measured()


def _frozen_levels(frozen, kind, profile, layer):
    """``kind``'s frozen noise for ``profile`` (its own, or a competence-matched profile's ``noise["matched"]``) at
    ``layer`` from the freeze file's content, as its ``helpers.power`` class; None where the freeze holds none."""
    noise = (frozen["noise"] if frozen["study"]["profile"] == profile
             else frozen["noise"].get("matched", {}).get(profile, {}))
    levels = noise.get(kind) if layer is None else noise.get(kind, {}).get(layer)
    cls = dict(prediction2=power.Noise, prediction1=power.MotifNoise, shift_invariance=power.GainNoise)[kind]
    return None if levels is None else cls(**levels)


def is_frozen(profile, path=FREEZE_PATH):
    """Whether ``profile``'s rules are frozen: its pages then simulate power at the frozen noise only, and where the
    freeze holds none for a layer the power is undefined (never the run's own noise)."""
    return _freezes(load(path), profile)


def _freezes(frozen, profile):
    """Whether the freeze file's content ``frozen`` (None before the freeze) freezes ``profile`` or its base."""
    matching = profiles.get(profile).matching
    return frozen is not None and frozen["study"]["profile"] in (profile, matching and matching.base)


def guard(profile, path=FREEZE_PATH):
    """Refuse to run a profile with confirmatory model seeds unless ``FREEZE.json`` freezes it and the code still
    matches the file: no confirmatory data is made under rules that were not fixed first. Other profiles pass."""
    seeds = set(profiles.get(profile).model_seeds) & set(profiles.CONFIRMATORY_SEEDS["model"])
    if not seeds:
        return
    if not is_frozen(profile, path):
        raise SystemExit(f"profile {profile!r} runs the confirmatory model seeds {sorted(seeds)}, but {path.name} does "
                         f"not freeze it: write the freeze first (python -m helpers.freeze --profile {profile} "
                         f"--results <exploratory results folders>) and commit it")
    found = mismatches(path, synthetic=False)  # the rules' behaviour on synthetic studies: tests/test_freeze.py
    if found:
        raise SystemExit(f"the code has moved from {path.name} since the freeze, so profile {profile!r}'s confirmatory "
                         f"run would not be the one pre-registered: " + "; ".join(found[:5]))


def noise_words(profile, path=FREEZE_PATH):
    """Where the noise a page's power is simulated at comes from, in words."""
    if is_frozen(profile, path):
        return "the freeze's noise (measured on the exploratory runs, fixed before this run)"
    return "this run's noise"


def digest(path=FREEZE_PATH):
    """The freeze file's SHA-256 (the first 16 hex digits), which results records store; None before the freeze."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


if __name__ == "__main__":
    raise SystemExit(main())
