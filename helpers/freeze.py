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


def record(profile, noise, studies=SYNTHETIC_STUDIES):
    """The freeze file's content, from the code and the frozen ``noise``."""
    return dict(rules=rules(), study=study(profile), interval_method=INTERVAL_METHOD, noise=canonical(noise),
                synthetic_verdicts=synthetic_verdicts(profile, noise, studies))


def write(profile, noise, path=FREEZE_PATH):
    write_json(path, record(profile, noise))


def load(path=FREEZE_PATH):
    """The freeze file's content, or None before the freeze."""
    return json.loads(path.read_text()) if path.exists() else None


def mismatches(path=FREEZE_PATH):
    """Where the code has moved from the freeze file: the sections (rules, study, interval method, synthetic
    verdicts) whose content differs, each with the first differing key. Empty when they agree."""
    frozen = load(path)
    if frozen is None:
        raise FileNotFoundError(f"no freeze file at {path}: write it with helpers.freeze.write(profile, noise)")
    now = record(frozen["study"]["profile"], frozen["noise"], len(next(iter(
        frozen["synthetic_verdicts"]["prediction1"].values()))))
    return [f"{section}: {_first_difference(frozen[section], now[section])}" for section in now
            if frozen.get(section) != now[section]]


def _first_difference(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    return f"{where.lstrip('.') or 'value'}: frozen {a!r}, now {b!r}"


def frozen_noise(kind, profile, layer=None, path=FREEZE_PATH):
    """The noise the freeze fixed for ``kind`` ("prediction2" and "shift_invariance" per ``layer``, "prediction1"),
    as its ``helpers.power`` class, when the freeze is ``profile``'s; else None (before the freeze, or another
    profile's pages: their power is simulated at their own run's noise, and their verdicts say so)."""
    frozen = load(path)
    if frozen is None or frozen["study"]["profile"] != profile:
        return None
    levels = frozen["noise"][kind] if layer is None else frozen["noise"][kind].get(layer)
    cls = dict(prediction2=power.Noise, prediction1=power.MotifNoise, shift_invariance=power.GainNoise)[kind]
    return None if levels is None else cls(**levels)


def digest(path=FREEZE_PATH):
    """The freeze file's SHA-256 (the first 16 hex digits), which results records store; None before the freeze."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None
