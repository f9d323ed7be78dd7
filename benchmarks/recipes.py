"""Accuracy against training time for cheap changes to the cpu profile's training recipes, both families.

    python benchmarks/recipes.py [--family cnn mlp] [--variant NAME ...] [--seed 0] [--out benchmarks/recipes.json]

Each variant is the profile's recipe with a few settings changed (``VARIANTS``), trained from scratch on the whole
of CIFAR-10 with one seed, beside the profile's own recipe. Every variant keeps the batch size and the epochs, so it
costs the baseline's time per epoch: accuracy at equal epochs is accuracy at equal time, and the comparison does not
depend on how busy the machine was. Each row keeps the test accuracy after every epoch and the seconds it took. Rows
are written as they finish (a rerun skips the variants already in ``--out``).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import train  # noqa: E402
from helpers.paths import write_json  # noqa: E402

# Per family: variant name -> settings changed from the cpu profile's recipe. Why these: both families end the
# 7-epoch schedule underfit (train accuracy no higher than test), so weaker augmentation and a larger step size are
# the cheap levers; a smaller batch buys more steps per epoch at some cost in throughput.
VARIANTS = {
    "cnn": {"baseline": {}, "crop 2": dict(crop=2), "lr 0.2": dict(lr=0.2), "crop 2, lr 0.2": dict(crop=2, lr=0.2)},
    "mlp": {"baseline": {}, "flips only, lr 2e-3": dict(crop=0, lr=2e-3), "crop 2, lr 2e-3": dict(crop=2, lr=2e-3)},
}

def run(family, name, changes, seed):
    config = {**train.config_for(family, "cpu"), **changes}
    _, record = train.train_model(config, seed=seed, device="cpu", verbose=False)
    return dict(family=family, variant=name, changes=changes, seed=seed, test_accuracy=record["test_accuracy"],
                train_seconds=record["train_seconds"], threads=torch.get_num_threads(),
                history=[dict(epoch=h["epoch"], test_acc=h["test_acc"], train_acc=h["train_acc"],
                              seconds=h["seconds"]) for h in record["history"]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", nargs="+", default=["cnn", "mlp"], choices=list(VARIANTS))
    parser.add_argument("--variant", nargs="+", help="only these variants (default: all of each family)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("recipes.json"))
    args = parser.parse_args(argv)
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    for family in args.family:
        for name, changes in VARIANTS[family].items():
            if args.variant and name not in args.variant:
                continue
            if any(r["family"] == family and r["variant"] == name and r["seed"] == args.seed for r in rows):
                continue
            rows.append(run(family, name, changes, args.seed))
            r = rows[-1]
            print(f"{family} {name}: {r['test_accuracy']:.4f} in {r['train_seconds']:.0f} s", flush=True)
            write_json(args.out, dict(rows=rows))


if __name__ == "__main__":
    main()
