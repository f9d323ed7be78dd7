"""How fast this machine runs the cpu study's two hot loops, before timing the study on it.

    python benchmarks/step_times.py [--repeats 20]

Milliseconds per training step of each cpu model (a batch of the profile's size, random images) and per step of a
stack of six SAEs of each arm (512 -> 1,536 features, batch 256, random vectors). Machines of one kind differ, and one
machine drifts: on 2026-12-02 the same code ran the VGG step at 116 ms at a session's start and 144 ms fifty minutes
later, and the study's time moved with it. A study timing is comparable with another only beside these numbers.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import profiles  # noqa: E402
from helpers.models import build_model, memory_format  # noqa: E402
from helpers.sae.model import SAEStack  # noqa: E402
from helpers.sae.train import new_optimizer, new_sae, train_step  # noqa: E402
from helpers.train import config_for, make_optimizer  # noqa: E402


def milliseconds(step, repeats, warmup=3):
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1000


def training_step(family):
    config = config_for(family, "cpu")
    model = build_model(config["family"], **config["arch"])
    opt, _ = make_optimizer(model, config, 1000)
    x = torch.rand(config["batch_size"], 3, 32, 32).contiguous(memory_format=memory_format(config["family"]))
    y = torch.randint(0, 10, (config["batch_size"],))

    def step():
        loss = F.cross_entropy(model(x), y, label_smoothing=config["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def sae_step(arm, saes=6, d=512, batch=256):
    acts = torch.relu(torch.randn(20000, d, generator=torch.Generator().manual_seed(0)))
    stack = SAEStack([new_sae(acts, arm, 32, 3, seed) for seed in range(saes)])
    opt = new_optimizer(stack, arm)
    l1 = torch.full((saes,), 0.05)
    silent = torch.zeros(saes, stack.n_features, dtype=torch.bool)
    silent[:, :40] = True  # a few dozen latents get AuxK's gradient, as in training
    g = torch.Generator().manual_seed(1)
    return lambda: train_step(stack, opt, acts[torch.randint(len(acts), (saes, batch), generator=g)], l1, silent)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    rows = {f"train {m}": milliseconds(training_step(m), args.repeats) for m in profiles.get("cpu").trained_models}
    rows.update({f"SAE stack {arm}": milliseconds(sae_step(arm), args.repeats) for arm in ("l1", "topk")})
    for name, ms in rows.items():
        print(f"{name:>20}: {ms:6.1f} ms per step")
    if args.out:
        args.out.write_text(json.dumps(dict(threads=torch.get_num_threads(), ms_per_step=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
