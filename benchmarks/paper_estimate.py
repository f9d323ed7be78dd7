"""The expected time of the paper-scale run (``python -m helpers.headless --profile paper``) on one GPU, from counted
floating-point work, for when no GPU is at hand to measure it.

    python benchmarks/paper_estimate.py [--profile paper] [--tflops-conv 40] [--tflops-matmul 150] [--gpu-gib 80]
                                        [--out ...]

The networks' forward work per image is counted by PyTorch's FlopCounterMode on the profile's own architectures
(no weights needed); a training step costs three forwards (forward, and backward to activations and to weights), an
AM step two and a half on average (forward and backward to the input, with shift-pooling's grid evaluated at the
end). The SAEs' work is their four matrix products per step, counted by hand (2 multiply-adds each way, times three
for training). What the estimate leaves out is stated with it: Python overhead per step (the loops are batched, a
few thousand steps per stage), data augmentation on the device, and the statistics of the comparison (bootstraps
and permutations over feature tables, minutes on a CPU at paper size, seconds on a GPU).

It states the memory the SAE pages need too (``sae_memory``): on the GPU, the largest stack that
``helpers.sae.plan_stacks`` makes within half of ``--gpu-gib`` (``helpers.sae.stack_bytes``, an estimate with a
margin measured on a CPU, not on a GPU); on the
host, the page's SAEs and harvested layers.

``--tflops-*`` are the sustained rates assumed on an H100/H200. Convolutions on 32x32 images keep a GPU far from its
dense bf16 peak (989 TFLOP/s): ResNet-18 trains on CIFAR-10 in about 5 s per epoch on an A100 with bf16 and
channels-last, some 17 TFLOP/s, so 40 for an H100 is the assumption. The MLPs' and SAEs' large matrix products (bf16
and TF32) run near 150. The result is a range over a 2x band around them.
"""
import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import profiles  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.paths import write_json  # noqa: E402

TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000


def forward_flops(family, arch):
    model = build_model(profiles.SCALE_MODELS.get(family, family), **arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    return counter.get_total_flops(), sum(p.numel() for p in model.parameters())


def hidden_widths(p):
    """The last hidden layer's width per family of profile ``p`` (the mid-depth layers are counted at it too)."""
    return {"cnn": 4096 if p.training["cnn"].arch["width"] == 1 else 512,
            "mlp": p.training["mlp"].arch["width"], "resnet": p.training["resnet"].arch.get("head", 512)}


def sae_memory(profile, gpu_gib):
    """Per family, the memory its SAE page needs on one GPU of ``gpu_gib`` GiB, all free: the SAEs of each arm in the
    stacks ``helpers.sae.plan_stacks`` makes within half of it, the largest stack's ``stack_bytes`` on the GPU; and
    on the host the page's SAEs (float32 weights) with its harvested layers (every network, training and test
    images)."""
    from helpers import sae as saelib
    from helpers.sae_study import variants
    p = profiles.get(profile)
    rows = []
    for family, d in ((f, hidden_widths(p)[f]) for f in p.families):
        n = TRAIN_IMAGES * (1 + p.sae.augment_copies)
        specs = variants(family, profile)
        sets = {network: torch.empty(n, d, device="meta") for network in {s.network for s in specs}}
        stacks = []
        for arm in p.arms("hidden"):
            acts = [sets[s.network] for s in specs if s.arm == arm]
            stacks += [saelib.stack_bytes_of(acts, stack, p.sae.expansion, p.sae.batch_size)
                       for stack in saelib.plan_stacks(acts, p.sae.expansion, p.sae.batch_size, gpu_gib * 2**30 // 2)]
        weights = len(specs) * 4 * (2 * d * p.sae.expansion * d)
        harvest = len(sets) * 4 * d * (n + TEST_IMAGES)
        rows.append(dict(family=family, width=d, saes=len(specs), stacks=len(stacks), gpu_peak_gib=max(stacks) / 2**30,
                         host_gib=(weights + harvest) / 2**30))
    return rows


def estimate(profile):
    p = profiles.get(profile)
    rows = []
    forward = {}
    for model in p.trained_models:
        t = p.training[model]
        forward[model], parameters = forward_flops(model, t.arch)
        per_epoch = 3 * forward[model] * TRAIN_IMAGES + forward[model] * TEST_IMAGES  # train, then the test split
        rows.append(dict(stage=f"training {model} ({parameters / 1e6:.0f}M parameters), {len(p.model_seeds)} seeds",
                         kind="matmul" if profiles.SCALE_MODELS.get(model, model) == "mlp" else "conv",
                         flops=len(p.model_seeds) * t.epochs * per_epoch))
    # Harvests: trained seeds and the random-init network, both study layers, training and test splits; the layer map
    harvest = sum((len(p.model_seeds) + 1) * 2 * forward[f] * (TRAIN_IMAGES + TEST_IMAGES) for f in p.families)
    rows.append(dict(stage="harvests and the layer map", kind="conv", flops=harvest * 1.2))
    # SAEs: per family and layer, every variant; width d of the layer, expansion x features
    sae = 0
    widths = hidden_widths(p)
    for family in p.families:
        for layer in profiles.STUDY_LAYERS:
            variants = (len(p.model_seeds) * len(p.sae_seeds) + 1 + (family == "cnn")) * len(p.arms(layer))
            d = widths[family]
            m = p.sae.expansion * d
            sae += variants * p.sae.steps * 3 * 2 * 2 * p.sae.batch_size * d * m
    for matched in profiles.matched_profiles(profile):  # the matched CNNs' SAEs at the last hidden layer
        q = profiles.get(matched)
        for family in q.matching.families:
            d = widths[family]
            variants = (len(q.model_seeds) * len(q.sae_seeds) + 1 + (family == "cnn")) * len(q.arms("hidden"))
            sae += variants * q.sae.steps * 3 * 2 * 2 * q.sae.batch_size * d * p.sae.expansion * d
    rows.append(dict(stage="SAEs (both arms, every variant, matched CNNs too)", kind="matmul", flops=sae))
    # AM: per network (trained seeds and random-init) the objective groups, each image steps x (forward + backward)
    images = p.am.units * (1 + 0.5 * 3) + 10  # pooled, earlier, channels/residual, classes
    am = 0
    for family in profiles.FAMILIES:
        per_net = images * len(p.am.am_seeds) * p.am.steps * 2.5 * forward[family] + p.am.units * 16 * forward[family]
        am += 2 * len(p.model_seeds) * per_net * 1.3  # trained and random-init; the contrast setting's pooled group
    am *= 1 + len(profiles.matched_profiles(profile)) * 0.5  # the matched pair renders its CNNs again
    rows.append(dict(stage="activation maximization", kind="conv", flops=am))
    # The curve along training: every epoch checkpoint read on the trajectory's test images
    curve = sum(len(p.model_seeds) * (p.training[m].epochs + 1) * forward[m] * p.compare.trajectory_images
                for m in p.trained_models)
    rows.append(dict(stage="checkpoints along training", kind="conv", flops=curve))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--tflops-conv", type=float, default=40.0)
    parser.add_argument("--tflops-matmul", type=float, default=150.0)
    parser.add_argument("--gpu-gib", type=float, default=80.0, help="the GPU's memory, for the SAE pages' stacks")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("paper_estimate.json"))
    args = parser.parse_args(argv)
    rows = estimate(args.profile)
    rate = {"conv": args.tflops_conv * 1e12, "matmul": args.tflops_matmul * 1e12}
    total = 0.0
    for r in rows:
        r["seconds"] = r["flops"] / rate[r["kind"]]
        total += r["seconds"]
        print(f"{r['stage']:<60} {r['flops'] / 1e15:8.2f} PFLOP  {r['seconds']:7.0f} s")
    print(f"{'total':<60} {sum(r['flops'] for r in rows) / 1e15:8.2f} PFLOP  {total:7.0f} s "
          f"({total / 120:.1f}-{total / 30:.1f} min over the 2x band)")
    memory = sae_memory(args.profile, args.gpu_gib)
    for r in memory:
        print(f"SAE page, {r['family']} ({r['saes']} SAEs of {r['width']} -> {r['width'] * 3:,}): {r['stacks']} "
              f"stacks on a {args.gpu_gib:.0f} GiB GPU, about {r['gpu_peak_gib']:.1f} GiB on it; "
              f"{r['host_gib']:.1f} GiB on the host")
    assumed = dict(conv=args.tflops_conv, matmul=args.tflops_matmul)
    write_json(args.out, dict(profile=args.profile, assumed_tflops=assumed, rows=rows, total_seconds=total,
                              band_minutes=[total / 120, total / 30], gpu_gib=args.gpu_gib, sae_memory=memory))


if __name__ == "__main__":
    main()
