"""How SAE features reproduce across SAE seeds against training steps (issue 36: SAEs whose features reproduce).

    python benchmarks/sae_reproducibility.py [--families cnn mlp] [--layer hidden] [--steps 1000 2000 4000 8000]
                                             [--lr-scale 1 2] [--batch 256 1024] [--target-l0 32]
                                             [--out benchmarks/sae_reproducibility.json]

Needs the cpu study's trained models (``Data/``, or ``$INTERPRET_MLP_DATA``). For each family's first model seed, at
a study layer (``--layer``: hidden, mid or late, read as the study reads it, ``profiles.readout``), two SAEs (SAE
seeds 0 and 1, the study's arm and sizes) are trained at each step count, learning-rate scale, batch size and
target L0, and measured on the test images: each seed's features matched in the other's
(``compare.Halves``, held out), the share of entering features (``compare.MIN_FIRING_IMAGES``) whose partner reaches
held-out r >= 0.5 (``compare.entering_statistics``; mean over both directions), with the explained variance, L0 and
dead share. The rule it reports: the fewest steps whose reproducible share reaches 90% of the share at four times as
many steps (where both were run), for the share of entering features and for the share of all features (more
features enter as training goes on, so the two can disagree). ``--merge FILE`` adds an earlier run's rows.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import compare, profiles  # noqa: E402
from helpers import sae as saelib  # noqa: E402
from helpers.activations import harvest_layers  # noqa: E402
from helpers.paths import write_json  # noqa: E402
from helpers.train import load_trained  # noqa: E402


def measure(train, test, settings, steps, lr_scale, arm, batch_size=None, target_l0=None):
    """Two SAE seeds trained on ``train`` and compared on ``test``: one row."""
    lr = saelib.learning_rate(arm, settings.expansion * train.shape[1]) * lr_scale
    batch_size, target_l0 = batch_size or settings.batch_size, target_l0 or settings.target_l0
    start = time.perf_counter()
    trained = saelib.train_saes([train, train], arm, [0, 1], target_l0=target_l0,
                                expansion=settings.expansion, batch_size=batch_size, steps=steps, lr=lr,
                                progress=False)
    seconds = time.perf_counter() - start
    metrics = [saelib.reconstruction_metrics(sae, test)[0] for sae, _ in trained]
    codes = [saelib.feature_activations(sae, test) for sae, _ in trained]
    select, evaluate = compare.split_halves(len(test), seed=0)
    halves = [compare.Halves(c, select, evaluate) for c in codes]
    shares = [compare.entering_statistics(halves[i].match(halves[1 - i], replicates=False), halves[i].entering())
              for i in (0, 1)]
    return dict(steps=steps, lr=lr, lr_scale=lr_scale, batch_size=batch_size, target_l0=target_l0, seconds=seconds,
                reproducible_share=sum(s["matched_share"] for s in shares) / 2,
                entering_share=sum(s["entering_share"] for s in shares) / 2,
                mean_r=sum(s["mean"] for s in shares) / 2,
                explained_variance=[m["explained_variance"] for m in metrics], l0=[m["l0"] for m in metrics],
                dead_share=[m["dead"] / m["n_features"] for m in metrics])


def setting_of(row):
    """A row's training setting besides its steps (rows of earlier runs lack batch and L0: the study's then)."""
    return (row["lr_scale"], row.get("batch_size", 256), row.get("target_l0", 32))


def chosen_steps(rows, of_all=False):
    """The fewest steps whose reproducible share reaches 90% of the share at four times as many, per setting
    (lr scale, batch, target L0): the share of entering features, or (``of_all``) of all features, which counts the
    entering population's growth."""
    out = {}
    for setting in sorted({setting_of(r) for r in rows}):
        share = {r["steps"]: r["reproducible_share"] * (r["entering_share"] if of_all else 1)
                 for r in rows if setting_of(r) == setting}
        ok = [s for s in sorted(share) if 4 * s in share and share[s] >= 0.9 * share[4 * s]]
        out[" ".join(f"{v:g}" for v in setting)] = ok[0] if ok else None
    return out


def with_choices(record):
    """``record`` with each family's chosen steps (``chosen_steps``, of entering and of all features)."""
    for family in record["families"].values():
        rows = family["rows"]
        family.update(chosen_steps=chosen_steps(rows), chosen_steps_of_all=chosen_steps(rows, of_all=True))
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["cnn", "mlp"])
    parser.add_argument("--layer", default="hidden")
    parser.add_argument("--arm", default="l1", choices=saelib.ARMS)
    parser.add_argument("--steps", nargs="+", type=int, default=[1000, 2000, 4000, 8000])
    parser.add_argument("--lr-scale", nargs="+", type=float, default=[1.0])
    parser.add_argument("--batch", nargs="+", type=int, default=[None])
    parser.add_argument("--target-l0", nargs="+", type=int, default=[None])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sae_reproducibility.json"))
    parser.add_argument("--merge", type=Path, help="an earlier run's file whose rows this run's join (same arm)")
    args = parser.parse_args(argv)
    settings = profiles.get("cpu").sae
    record = dict(arm=args.arm, layer=args.layer, threads=torch.get_num_threads(), families={})
    if args.merge:
        record["families"] = json.loads(args.merge.read_text())["families"]
    grid = [(scale, batch, l0, steps) for scale in args.lr_scale for batch in args.batch for l0 in args.target_l0
            for steps in args.steps]
    for family in args.families:
        net = load_trained(family, "cpu", 0)
        module, readout_grid = profiles.readout("cpu", args.layer, family)
        acts = [harvest_layers(net, [module], split, grids={module: readout_grid})[module][0]
                for split in ("train", "test")]
        rows = record["families"].get(family, {}).get("rows", [])
        for scale, batch, l0, steps in grid:
            r = measure(*acts, settings, steps, scale, args.arm, batch, l0)
            rows = sorted([old for old in rows if (old["steps"], *setting_of(old)) != (steps, *setting_of(r))] + [r],
                          key=lambda row: (*setting_of(row), row["steps"]))
            print(f"{family} {module} lr x{scale} batch {r['batch_size']} L0 {r['target_l0']} {steps:>5} steps: "
                  f"reproducible {r['reproducible_share']:.3f} of "
                  f"{r['entering_share']:.2f} entering, mean r {r['mean_r']:.3f}, EV "
                  f"{sum(r['explained_variance']) / 2:.3f}, L0 {sum(r['l0']) / 2:.1f}, dead "
                  f"{sum(r['dead_share']) / 2:.3f}, {r['seconds']:.0f} s", flush=True)
            record["families"][family] = dict(rows=rows)
            write_json(args.out, with_choices(record))  # kept on a crash
        print(f"{family}: chosen steps {chosen_steps(rows)} (share of entering features), "
              f"{chosen_steps(rows, of_all=True)} (of all)")


if __name__ == "__main__":
    main()
