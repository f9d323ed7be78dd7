"""The full-size path, end to end: random-weight checkpoints in both official formats, notebooks 01-05 on them.

    python benchmarks/full_size.py [--train-images 2000] [--test-images 1000] [--sae-steps 30] [--data FOLDER]

Writes VGG13_bn (28M parameters, hidden layer 4096) as huyvnphan/PyTorch_CIFAR10 saves it (a plain state dict,
``vgg13_bn.pt``) and B-12/Wi-1024 at 64 px as gregorbachmann/scaling_mlps saves it (a state dict from a
``torch.compile``d model, keys prefixed ``_orig_mod.``) into a scratch data folder, then runs
01_activation_maximization, 02_sae (both models), 03_compare and 05_atlas through the ``full-size-check`` profile (the
official checkpoints' loading path, few steps; ``helpers.profiles``). The
networks, SAEs (4096 -> 12,288 and 1024 -> 3,072) and statistics are full size; the step counts and the number
of images are not (real CIFAR-10 images, a class-balanced subset written as torchvision's pickled batches, so a
CPU finishes in minutes). Prints and writes (``benchmarks/full_size.json``) each notebook's time and the peak
resident memory of its kernel, and then the README's table of them (``readme_block``; ``--readme`` writes it from the
file without running); exits 1 if a notebook fails.
"""
import argparse
import json
import math
import os
import pickle
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from helpers import profiles  # noqa: E402

PROFILE = "full-size-check"
HIDDEN = {"cnn": 4096, "mlp": 1024}  # the last hidden layer's width: VGG13_bn's classifier, B-12/Wi-1024's blocks
README = ROOT / "README.md"
BEGIN, END = "<!-- full_size.json: written by benchmarks/full_size.py -->", "<!-- end of full_size.json -->"


def write_subset(data_dir, train_images, test_images):
    """A class-balanced subset of the real CIFAR-10 splits in torchvision's ``cifar-10-batches-py`` layout."""
    from helpers.data import load_cifar10
    done, folder = data_dir / "cifar-10-batches-py", data_dir / ".cifar-10-batches-py.tmp"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, names in (("train", train_images, [f"data_batch_{i}" for i in range(1, 6)]),
                            ("test", test_images, ["test_batch"])):
        images, labels, _ = load_cifar10(split, verbose=False)
        keep = torch.cat([torch.nonzero(labels == c).flatten()[: n // 10] for c in range(10)])
        images, labels = images[keep].numpy(), labels[keep].numpy()
        for part, idx in zip(names, np.array_split(np.random.default_rng(0).permutation(len(keep)), len(names))):
            with open(folder / part, "wb") as f:
                pickle.dump({"data": images[idx].reshape(len(idx), -1), "labels": labels[idx].tolist()}, f)
    folder.rename(done)  # complete or absent


def write_official_checkpoints(data_dir):
    from helpers.models import OFFICIAL, build_model
    from helpers.paths import atomic_path
    torch.manual_seed(0)
    for spec in OFFICIAL.values():
        if (data_dir / spec["file"]).exists():
            continue  # kept: the caches are keyed by the checkpoint's time stamp
        state = build_model(spec["family"], **spec["arch"]).state_dict()
        if spec["family"] == "mlp":
            state = {f"_orig_mod.{k}": v for k, v in state.items()}
        with atomic_path(data_dir / spec["file"]) as tmp:  # an interrupted run leaves no half-written checkpoint
            torch.save(state, tmp)


class PeakMemory:
    """The largest resident set (VmHWM) of any process below this one while the block runs (the notebook's kernel)."""

    def __init__(self, every=0.25):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    def _descendants(self):
        children, found = {}, []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
                children.setdefault(int(fields["PPid"]), []).append((int(fields["Pid"]), fields.get("VmHWM", "0 kB")))
            except (OSError, KeyError, ValueError):
                continue  # a process that ended while being read
        stack = [os.getpid()]
        while stack:
            for pid, hwm in children.get(stack.pop(), []):
                found.append(int(hwm.split()[0]) * 1024)
                stack.append(pid)
        return found

    def _watch(self):
        while not self._stop.wait(self.every):
            self.peak = max([self.peak, *self._descendants()])

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def describe(notebook, model):
    """What one notebook of the run does, as the README's table names it."""
    p = profiles.get(PROFILE)
    if notebook.startswith("01"):
        return f"01, both models, {p.am.units} units per layer, {p.am.steps} AM steps"
    if notebook.startswith("02"):
        from helpers.sae_study import variants
        d, saes = HIDDEN[model], len(variants(model, PROFILE))
        return f"02 {profiles.FAMILY[model].role} ({saes} SAEs of {d:,} → {p.sae.expansion * d:,})"
    if notebook.startswith("03"):
        return "03 (every SAE's features compared, layer map, pairs)"
    return f"{notebook[:2]} ({notebook[3:].removesuffix('.ipynb')})"


def memory_to_plan(gib):
    """The smallest common memory size that leaves a fifth of itself free beside ``gib``."""
    return next((size for size in (4, 8, 16, 32, 64, 128, 256, 512) if gib <= 0.8 * size), math.ceil(gib / 0.8))


def official_harvest_gib(record):
    """What the `official` profile's CNN SAE page holds beyond this run's: its networks' harvested vectors over all
    of CIFAR-10 (50,000 training and 10,000 test images) instead of the run's subset."""
    from helpers.sae_study import variants
    networks = {spec.network for spec in variants("cnn", "official")}  # the mapped copy of the layer counts too
    extra_images = (50_000 - record["train_images"]) * (1 + profiles.get("official").sae.augment_copies) \
        + 10_000 - record["test_images"]
    return len(networks) * extra_images * HIDDEN["cnn"] * 4 / 2**30


def readme_block(record):
    """The README's account of a run (``benchmarks/full_size.json``): the machine, the table, the memory it needs."""
    rows = record["rows"]
    peak = max(rows, key=lambda r: r["peak_memory_gib"])
    machine, largest = record["machine"], peak["what"].split(" (")[0]
    official = peak["peak_memory_gib"] + official_harvest_gib(record)
    lines = [BEGIN, *textwrap.wrap(f"Measured on a {machine['threads']}-thread {machine['cpu']} ({record['date']}, "
                                   f"commit {record['commit']}), with {record['sae_steps']} steps per SAE; "
                                   "`benchmarks/full_size.json` holds the run:", 120),
             "", "| notebook | time | peak memory of the kernel |", "| --- | --- | --- |"]
    lines += [f"| {r['what']} | {r['seconds']:.0f} s | {r['peak_memory_gib']:.1f} GiB |" for r in rows]
    lines += ["", *textwrap.wrap(
        f"This check's largest peak, {peak['peak_memory_gib']:.1f} GiB ({largest}), needs a machine of "
        f"{memory_to_plan(peak['peak_memory_gib'])} GiB (a fifth left free). The `official` profile harvests all "
        f"{50_000 + 10_000:,} CIFAR-10 images instead of {record['train_images'] + record['test_images']:,}: its CNN "
        f"page holds about {official - peak['peak_memory_gib']:.1f} GiB more of harvested vectors, about "
        f"{official:.1f} GiB (estimated, not measured), so plan {memory_to_plan(official)} GiB. On a CPU the "
        "full-size SAEs train one at a time (a stack holds at most `helpers.sae.CPU_STACK_BYTES`; "
        "`$INTERPRET_MLP_SAE_MEMORY_GIB` sets it), on a GPU as many as fit in half its free memory.", 120), END]
    return "\n".join(lines)


def write_readme(record):
    """``readme_block`` of ``record`` in place of the README's."""
    from helpers.paths import atomic_path
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    with atomic_path(README) as tmp:
        Path(tmp).write_text(text[:start] + readme_block(record) + text[end:])


def commit():
    import subprocess
    run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (run.stdout.strip() or "unknown") + (" with changes" if dirty else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=2000, help="training images (a multiple of 10)")
    parser.add_argument("--test-images", type=int, default=1000,
                        help="test images (a multiple of 10; 01 needs 512 + the profile's natural images)")
    parser.add_argument("--sae-steps", type=int, default=profiles.get(PROFILE).sae.steps,
                        help="training steps of each SAE (the convergence gate needs two log entries: 26 or more)")
    parser.add_argument("--data", type=Path, help="the scratch data folder of an earlier run, to reuse its results "
                        "(by default a new one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "full_size.json")
    parser.add_argument("--readme", action="store_true", help="only write the README's table from --out")
    parser.add_argument("--max-peak-gib", type=float, default=8.0,
                        help="fail when a notebook's kernel peaks above this (the README's promise)")
    args = parser.parse_args()
    if args.readme:
        return write_readme(json.loads(args.out.read_text()))
    natural = profiles.get(PROFILE).am.natural_images
    if args.test_images < 512 + natural or args.train_images < 10 or args.train_images % 10 or args.test_images % 10:
        parser.error(f"--train-images {args.train_images} / --test-images {args.test_images}: both must be multiples "
                     f"of 10, and 01 needs at least {512 + natural} test images (512 to pick units, {natural} natural "
                     "images)")
    from run_all import machine_description

    from helpers import manifest, study
    from helpers.paths import write_json

    data_dir = args.data or Path(tempfile.mkdtemp(prefix="full-size-data-"))
    if not (data_dir / "cifar-10-batches-py").exists():
        write_subset(data_dir, args.train_images, args.test_images)
    os.environ["INTERPRET_MLP_DATA"] = str(data_dir)  # the kernels read it too
    os.environ.pop("CIFAR10_JPG", None)  # only the subset
    write_official_checkpoints(data_dir)
    notebooks = Path(tempfile.mkdtemp(prefix="full-size-notebooks-"))
    # The full-size-check profile (helpers.profiles): the published architectures, few steps. The study's steps at
    # the last hidden layer, with the SAE steps of the command line.
    runs = [step for step in manifest.steps(PROFILE) if step.notebook != "04_answers.ipynb"
            and step.parameters.get("layer", "hidden") == "hidden"]
    rows, failed = [], False
    for step in runs:
        name, extra = step.notebook, step.parameters
        parameters = dict(profile=PROFILE, **extra, **({"overrides": {"steps": args.sae_steps}}
                                                       if name == "02_sae.ipynb" else {}))
        start = time.time()
        with PeakMemory() as memory:
            try:
                study.run_notebook(study.NOTEBOOKS / name, notebooks / f"{name}-{extra.get('model', '')}.ipynb",
                                   parameters, progress=False)
                status = "ok"
            except SystemExit as e:
                status, failed = str(e).strip().splitlines()[0], True
        rows.append(dict(notebook=name, model=extra.get("model", ""), what=describe(name, extra.get("model", "")),
                         seconds=round(time.time() - start, 1),
                         peak_memory_gib=round(memory.peak / 2**30, 2), status=status,
                         load_average=round(os.getloadavg()[1], 1)))  # 5-minute load: above the cores = shared
        print(f"{name} {extra.get('model', '')}: {status}, {rows[-1]['seconds']:.0f} s, "
              f"kernel peak {rows[-1]['peak_memory_gib']:.2f} GiB", flush=True)
        if failed:
            break
    record = dict(train_images=args.train_images, test_images=args.test_images, sae_steps=args.sae_steps,
                  machine=machine_description(), date=time.strftime("%Y-%m-%d"), commit=commit(), rows=rows)
    write_json(args.out, record)
    print(f"written: {args.out} (executed notebooks in {notebooks})")
    if not failed and args.out == parser.get_default("out"):
        write_readme(record)
        print(f"written: the table in {README}")
    over = [f"{r['what']}: {r['peak_memory_gib']:.2f} GiB" for r in rows if r["peak_memory_gib"] > args.max_peak_gib]
    if over:
        print(f"above --max-peak-gib {args.max_peak_gib}: {'; '.join(over)}")
    sys.exit(1 if failed or over else 0)


if __name__ == "__main__":
    main()
