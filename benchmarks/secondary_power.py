"""The power of Prediction 2's secondary rules, simulated at a finished run's noise: *beyond class and predictions*
in the L1 arm, and both questions in the dictionary-free linear measure, beside the primary (*shares features*, L1)
that the comparison pages simulate. Same law and same verdict functions as the pages (``helpers.power``); only the
question planted and the noise differ: the linear measure's is read from its per-model-seed R² (each seed one unit, no
SAE seeds, no gates).

    python benchmarks/secondary_power.py --results Data/results/cpu [--measure] [--studies 500]

``--results``: a run's results folder (``Data/results/<profile>`` or a book's ``results``); the linear measure's
per-seed values are read from its ``compare_<layer>_linear_seeds.csv``, which runs since this script write; with
``--measure`` a folder without them gets them from the run's checkpoints and activations (``ComparePage.layer_reps``,
``compare.linear_measures``: the profile's model seeds must be that run's). Writes ``benchmarks/secondary_power.json``.

The confirmatory run's rules are frozen (``FREEZE.json``): its secondary verdicts stay described, whatever this finds.
Run on the exploratory results, it says whether those rules would have been tests had they been frozen with the
primary."""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import compare, power, profiles, verdict  # noqa: E402
from helpers.paths import atomic_path, write_json  # noqa: E402

OUT = Path(__file__).with_name("secondary_power.json")


def measured_linear_seeds(profile, layer, results):
    """The linear measure's per-seed values at ``layer``, measured again from the run's models (its page's own
    readout and resampling), written beside the run's other results."""
    from helpers.compare_study import ComparePage
    measured, _ = ComparePage(profile, layer).linear_measures()
    table = compare.seed_table(measured)
    with atomic_path(results / f"compare_{layer}_linear_seeds.csv") as tmp:  # never a half-written file
        table.to_csv(tmp, index=False)
    return table


# The noises each rule is simulated at: the run's own (its spreads at the upper end over comparisons, as the pages
# estimate them), the freeze's (the L1 arm only: FREEZE.json's levels and spreads, the larger of two exploratory runs',
# with the run's conditional levels, which the freeze did not hold), and the run's with every spread doubled (four
# model seeds estimate an SD loosely: its upper 80% bound at three degrees of freedom is about 1.6 times it).
SETTINGS = ("run", "frozen", "doubled")
SPREADS = ("between_seeds", "between_sae_seeds", "images")


def noises(run, arm, profile, layer):
    """{setting: the ``power.Noise`` a rule of ``arm`` at ``layer`` is simulated at, or None}, from the run's own
    ``run``."""
    from helpers import freeze
    frozen = freeze.frozen_noise("prediction2", profile, layer) if arm == "l1" else None
    conditional = {k: v for k, v in dataclasses.asdict(run).items() if "conditional" in k}
    return dict(run=run, frozen=frozen and dataclasses.replace(frozen, **conditional),
                doubled=dataclasses.replace(run, **{k: 2 * getattr(run, k) for k in SPREADS}))


def layer_power(results, profile, layer, studies, measure):
    """{arm/question: {setting: the power table beside the noise it was simulated at}} at one layer of a run."""
    import pandas as pd
    found = json.loads((results / f"conclusions_{layer}.json").read_text())
    statistics = pd.read_csv(results / f"compare_{layer}_statistics.csv").to_dict("records")
    directions = pd.read_csv(results / f"compare_{layer}_directions.csv").to_dict("records")
    counts = {arm: (len(s["kept"]), s["total"]) for arm, s in found["seeds"].items()}
    n_seeds = counts[compare.LINEAR_ARM][1]
    sae_seeds = len(profiles.get(profile).sae_seeds_of("l1"))
    measured = {}
    features = results / f"compare_{layer}_features.csv.gz"
    if "l1" in counts and features.exists():
        measured["l1"] = (power.noise_from(pd.read_csv(features), statistics, directions, counts), sae_seeds)
    seeds_path = results / f"compare_{layer}_linear_seeds.csv"
    seeds = (pd.read_csv(seeds_path) if seeds_path.exists() else
             measured_linear_seeds(profile, layer, results) if measure else None)
    if seeds is not None:
        measured[compare.LINEAR_ARM] = (power.linear_noise(seeds, statistics, directions, n_seeds), 1)
    out = {}
    for arm, (run, units) in measured.items():
        for question in verdict.QUESTIONS:
            out[f"{arm}/{question}"] = {
                setting: dict(power=None if noise is None else power.power(
                    n_seeds, studies, noise, sae_seeds=units, question=question),
                    noise=noise and dataclasses.asdict(noise))
                for setting, noise in (noises(run, arm, profile, layer) if run is not None else {}).items()}
    return out


def _cell(p):
    if p is None:
        return "–"
    return (f"{p['similar_supported']:.0%}, {p['null_not_supported']:.0%}, {p['null_supported']:.0%}, "
            f"{min(p['coverage_similar'], p['coverage_null']):.0%}: {'met' if p['adequate'] else 'short'}")


def readme_table(out):
    """The README's table of a written result (``OUT``): one row per layer pair, measure and question; per noise
    setting, the shares of a planted similar pair supported, of a planted null not supported and supported, the
    lower of the two coverages, and whether every requirement is met."""
    words = {"hidden": "last hidden", "mid": "half depth", "late": "three quarters"}
    heads = dict(run="at the run's noise", frozen="at the freeze's spreads (L1)", doubled="every spread doubled")
    lines = ["| layer pair | measure | question | " + " | ".join(heads[k] for k in SETTINGS) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in SETTINGS) + " |"]
    for layer in profiles.STUDY_LAYERS:
        rows = out["layers"].get(layer, {})
        for name in sorted(rows, key=lambda k: (k.split("/")[0] != "l1", list(verdict.QUESTIONS).index(
                k.split("/")[1]))):
            arm, question, row = *name.split("/"), rows[name]
            cells = [_cell(row.get(k, {}).get("power")) for k in SETTINGS]
            lines.append("| " + " | ".join([words[layer], "L1 SAEs" if arm == "l1" else "linear (ridge R²)",
                                             verdict.QUESTION_WORDS[question], *cells]) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, help="a run's results folder")
    parser.add_argument("--profile", default="cpu", choices=profiles.STUDY_PROFILES)
    parser.add_argument("--studies", type=int, default=500, help="simulated studies per planted answer")
    parser.add_argument("--measure", action="store_true", help="measure the linear measure's per-seed values "
                        "from the run's models where the folder lacks them")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--readme", action="store_true", help="print the README's table of the written result")
    parser.add_argument("--source", help="what run the results folder holds, in words, for the record (default: "
                        "its path)")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_table(json.loads(args.out.read_text())))
        return
    if args.results is None:
        parser.error("--results is required")
    layers = [layer for layer in profiles.STUDY_LAYERS if (args.results / f"conclusions_{layer}.json").exists()]
    if not layers:
        parser.error(f"{args.results} holds no conclusions_<layer>.json: point --results at a finished run's results")
    started = time.perf_counter()
    out = dict(results=args.source or str(args.results), profile=args.profile, studies=args.studies,
               required=power.REQUIRED, planted=power.PLANTED, layers={})
    for layer in layers:
        out["layers"][layer] = layer_power(args.results, args.profile, layer, args.studies, args.measure)
        for name, row in out["layers"][layer].items():
            print(layer, name, {k: _cell(v["power"]) for k, v in row.items()}, flush=True)
    out["seconds"] = round(time.perf_counter() - started)
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
