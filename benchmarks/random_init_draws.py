"""How far Prediction 2's zero moves between random-init networks: the study's "shares features" zero is the L1 SAE of
one randomly initialized network per family (the first model seed's, ``sae_study.variants``), so the spread between
such networks is in no interval. This trains the same SAE (the first SAE seed, the layer's settings) on the random-init
networks of every model seed of the profile (the first seed's included, so that every draw comes from one procedure)
and runs the question's comparison once per draw, each draw's random-init SAEs standing in for both families' zero
(the observation's and the ceiling's), through the real measurement and verdict functions
(``compare.prediction2_arm``, ``verdict.prediction2_arm``). One more row runs the study's own random-init SAEs (from
its files): it must equal the book's, and its distance from the first seed's draw trained here is the procedure's.

    python benchmarks/random_init_draws.py [--profile cpu] [--layer hidden]

Needs the profile's study (checkpoints, SAEs, features): run it in the checkout that ran it. Post hoc and
descriptive: the confirmatory rules are frozen with one draw, and no verdict of the book changes. Writes
``benchmarks/random_init_draws_<layer>.json``; ``--readme`` prints the README's table of the written files."""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import compare, profiles, verdict  # noqa: E402
from helpers.paths import write_json  # noqa: E402

HERE = Path(__file__).parent


def out_path(layer):
    return HERE / f"random_init_draws_{layer}.json"
ARM = "l1"


def random_init_saes(page, family):
    """The L1 SAE (the first SAE seed, the layer's settings) on ``family``'s network randomly initialized with each
    model seed of the profile, all trained here in memory by one procedure (kept out of the study's files), and the
    study's own (the first seed's, read from its files; ``page``: the layer's ``ComparePage``). Returns ({model seed:
    (features on the test images, alive share, {gate: passed})}, the study's (features, alive share)). The gates are
    the study's but the accuracy drop, which a random network's chance accuracy leaves without meaning."""
    from helpers.models import fingerprint
    from helpers.sae import iter_saes
    from helpers.sae.evaluate import feature_activations, reconstruction_metrics
    from helpers.sae_study import SAEPage
    from helpers.train import random_model
    p = profiles.get(page.profile)
    own = next((s, r) for s, r in page.summary.items() if (s.family, s.net, s.arm) == (family, "random-init", ARM))
    sae_page = SAEPage(page.profile, family, page.layer)
    sae_page.nets = {("random-init", s): random_model(family, page.profile, s) for s in p.model_seeds}
    sae_page.fingerprints = {k: fingerprint(net) for k, net in sae_page.nets.items()}
    sae_page.specs = []  # no mapped layer to make
    harvest = sae_page.harvest()  # cached by each network's weights, as the study's harvests are
    trained = iter_saes([harvest.train[("random-init", s)] for s in p.model_seeds], ARM,
                        [p.sae_seeds[0]] * len(p.model_seeds), progress=False, **sae_page.settings.training(ARM))
    out = {}
    for s, (sae, log) in zip(p.model_seeds, trained):
        test = harvest.test[("random-init", s)]
        metrics, _ = reconstruction_metrics(sae, test)
        gates = verdict.sae_gates(dict(metrics, accuracy_original=0.0, accuracy_spliced=0.0),
                                  sae_page.settings.target_l0, log)
        out[s] = (feature_activations(sae, test), 1 - metrics["dead"] / metrics["n_features"],
                  {g["gate"]: bool(g["passed"]) for g in gates if g["gate"] != "accuracy drop"})
    return out, (page.features[own[0].id], own[1]["alive_share"])


def draw_rows(profile, layer):
    """One row per random-init draw (trained here; "study": the study's own), question and direction: the zero, the
    ceiling's own random-init null, the position with its interval, the verdict of that direction, and the draws'
    alive shares and gates."""
    from helpers.compare_study import ComparePage
    page = ComparePage(profile, layer)
    draws = {f: random_init_saes(page, f) for f in verdict.QUESTION_FAMILIES}
    specs = [s for s in page.summary if s.arm == ARM and s.family in verdict.QUESTION_FAMILIES]
    gates_ok = {s.id: r["gates_passed"] for s, r in page.summary.items()}
    alive = {s.id: r["alive_share"] for s, r in page.summary.items()}
    zero_ids = {s.family: s.id for s in specs if s.net == "random-init"}
    rows = []
    for seed in ["study", *profiles.get(profile).model_seeds]:
        features, extra = {s.id: page.features[s.id] for s in specs}, {}
        for family, sae_id in zero_ids.items():
            own, stored = draws[family]
            if seed == "study":
                features[sae_id], alive[sae_id] = stored
            else:
                features[sae_id], alive[sae_id], gates = own[seed]
                extra.update({f"{family}_alive_share": alive[sae_id], f"{family}_gates": gates})
        measured, _ = page.measure_arm(features, specs, alive, ARM, comparisons=compare.COMPARISONS[:1])
        _, directions = verdict.prediction2_arm(measured, gates_ok)
        rows += [dict(random_init_seed=seed, question=d["question"], direction=d["direction"], zero=d["null_value"],
                      ceiling_null=d["ceiling_null"], observed=d["observed"], position=d["position"],
                      position_low=d["position_low"], position_high=d["position_high"], verdict=d["verdict"],
                      **extra)
                 for d in directions if d["comparison"] == "question"]
        for r in rows[-4:]:
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
    return rows


def spread(rows):
    """Per question and direction, over the draws trained here: the SD of the zero and of the position, and the
    verdicts seen."""
    out = {}
    drawn = [r for r in rows if r["random_init_seed"] != "study"]
    for key in dict.fromkeys((r["question"], r["direction"]) for r in drawn):
        mine = [r for r in drawn if (r["question"], r["direction"]) == key]
        out["/".join(key)] = dict(zero_sd=statistics.stdev(r["zero"] for r in mine),
                                  position_sd=statistics.stdev(r["position"] for r in mine),
                                  positions=[r["position"] for r in mine], verdicts=[r["verdict"] for r in mine])
    return out


def readme_table(layers=None):
    """The README's table: per layer pair written and direction of "shares features", each draw's zero and position
    with its interval, and the verdicts."""
    words = {"hidden": "last hidden", "mid": "half depth", "late": "three quarters"}
    lines = ["| layer pair | direction | random-init network (model seed) | zero | position [95% interval] | verdict | "
             "the draws' SAEs (VGG / MLP): alive share, gates |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for layer in layers or profiles.STUDY_LAYERS:
        if not out_path(layer).exists():
            continue
        found = json.loads(out_path(layer).read_text())
        shares = [r for r in found["rows"] if r["question"] == "shares"]
        for r in sorted(shares, key=lambda r: (r["direction"] != "cnn->mlp", str(r["random_init_seed"]))):
            arrow = " → ".join(profiles.side_name(side) for side in r["direction"].split("->"))
            drawn = r["random_init_seed"] != "study"
            name = r["random_init_seed"] if drawn else "the study's (10, its files)"
            saes = " / ".join(f"{r[f + '_alive_share']:.2f}, " + ("pass" if all(r[f + "_gates"].values()) else
                                                                   "fail: " + ", ".join(g for g, ok in
                                                                                        r[f + "_gates"].items()
                                                                                        if not ok))
                              for f in ("cnn", "mlp")) if drawn else "as in the book"
            lines.append(f"| {words[layer]} | {arrow} | {name} | {r['zero']:.3f} | {r['position']:.2f} "
                         f"[{r['position_low']:.2f}, {r['position_high']:.2f}] | {r['verdict']} | {saes} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=profiles.STUDY_PROFILES)
    parser.add_argument("--layer", default="hidden", choices=profiles.STUDY_LAYERS)
    parser.add_argument("--out", type=Path, help="default: benchmarks/random_init_draws_<layer>.json")
    parser.add_argument("--readme", action="store_true", help="print the README's table of the written files")
    args = parser.parse_args(argv)
    if args.readme:
        print(readme_table())
        return
    started = time.perf_counter()
    rows = draw_rows(args.profile, args.layer)
    out = dict(profile=args.profile, layer=args.layer, seeds=profiles.get(args.profile).model_seeds, rows=rows,
               spread=spread(rows), seconds=round(time.perf_counter() - started))
    write_json(args.out or out_path(args.layer), out)
    print(json.dumps(out["spread"], indent=1))


if __name__ == "__main__":
    main()
