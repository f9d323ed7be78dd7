"""Shift invariance along depth, measured without activation maximization (issue 37, exploratory).

    python benchmarks/shift_invariance.py [--seeds 0] [--images 500] [--out benchmarks/shift_invariance.json]

Needs the cpu study's trained models (``Data/``, or ``$INTERPRET_MLP_DATA``). For each family (VGG, MLP, ResNet),
each model seed and its random-init network: every depth layer's invariance to circular shifts of 1, 2, 4 and 8
pixels (``invariance.shift_invariance``: each unit's correlation across test images between its value on an image
and on the shifted image, the mean of both axes, beside the pixels' own), the test accuracy under the same shifts,
and for the MLP the locality of its first-layer weights (``invariance.weight_locality``). The training gain at a
layer is the trained network's invariance minus its random-init network's.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import data as cifar  # noqa: E402
from helpers import invariance, models  # noqa: E402
from helpers.paths import write_json  # noqa: E402
from helpers.train import load_trained, random_model  # noqa: E402

SHIFTS = (1, 2, 4, 8)


def measure(net, images, labels, trained):
    """One network's rows: invariance per layer and shift, the pixels', and (trained) accuracy under shifts."""
    layers = models.depth_layers(net)
    raw, _ = invariance.shift_invariance(net, images, layers, SHIFTS)
    row = dict(layers={layer: raw[layer] for layer in layers}, pixels=raw["pixels"])
    if trained:
        row["accuracy"] = invariance.shifted_accuracy(net, images, labels, (0, *SHIFTS))
    if isinstance(net, models.BottleneckMLP):
        locality = invariance.weight_locality(net.linear_in.weight, net.resolution)
        row["first_layer_locality"] = dict(median=locality.median().item(), q90=locality.quantile(0.9).item(),
                                           even=(8 / net.resolution) ** 2)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("shift_invariance.json"))
    args = parser.parse_args(argv)
    images, labels, _ = cifar.load_cifar10("test")
    images, labels = images[:args.images], labels[:args.images]
    record = dict(images=args.images, shifts=SHIFTS, threads=torch.get_num_threads(), families={})
    for family in ("cnn", "mlp", "resnet"):
        rows = {}
        for seed in args.seeds:
            trained = measure(load_trained(family, "cpu", seed), images, labels, True)
            random = measure(random_model(family, "cpu", seed), images, labels, False)
            gain = {layer: {s: trained["layers"][layer][s] - random["layers"][layer][s] for s in SHIFTS}
                    for layer in trained["layers"]}
            rows[seed] = dict(trained=trained, random_init=random, training_gain=gain)
            for layer, per_shift in gain.items():
                print(f"{family} seed {seed} {layer:>12}: training gain " +
                      ", ".join(f"{s} px {v:+.3f}" for s, v in per_shift.items()), flush=True)
        record["families"][family] = rows
    write_json(args.out, record)


if __name__ == "__main__":
    main()
