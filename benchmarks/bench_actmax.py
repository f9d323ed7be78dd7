"""Activation maximization: one batch of 64 units versus the same 64 units one at a time, per cpu-profile model.

    python benchmarks/bench_actmax.py [--profile cpu] [--units 64] [--steps 256]

Both runs use the same settings in the same process; the printed ratio is loop time / batched time.
Needs the profile's checkpoints (notebooks/00_train.ipynb); falls back to random weights with a note.
"""
import argparse
import time

import torch

from helpers import actmax
from helpers.train import FAMILY_NAMES, load_trained, random_model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--steps", type=int, default=256)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    for family in ("cnn", "mlp"):
        try:
            net, note = load_trained(family, args.profile), "trained"
        except FileNotFoundError:
            net, note = random_model(family, args.profile), "random weights (no checkpoint)"
        units = list(range(args.units))
        settings = dict(parameterization="fft", steps=args.steps, progress=False)
        start = time.perf_counter()
        actmax.render(net, actmax.unit("hidden", units), **settings)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        for u in units:
            actmax.render(net, actmax.unit("hidden", [u]), **settings)
        looped = time.perf_counter() - start
        print(f"{FAMILY_NAMES[family]:>13} ({args.profile}, {note}): {args.units} units x {args.steps} steps: "
              f"batched {batched:.1f} s, one at a time {looped:.1f} s, speed-up x{looped / batched:.1f}")


if __name__ == "__main__":
    main()
