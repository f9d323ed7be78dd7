"""Every benchmark of the study's hot loops, in one process, each measured against its baseline interleaved.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results.json]

Most of its time goes to the full-size SAE and to scikit-learn; ``--quick`` leaves the full-size SAE out.

How the figures are made, so that a ratio can be trusted:
- the measured code and its baseline run in turns (A B A B ...), several repeats, in this one process; each
  figure is the median of the per-repeat ratios, with the lowest and highest beside it;
- the hardware limit ("peak") is the best of repeated float32 matrix multiplies of the very shapes the measured
  code multiplies, taken in the same turns; the measured code's floating-point work is counted by PyTorch's
  FlopCounterMode on one step, not estimated by hand;
- a figure above 100% of peak cannot be right (the machine was busy during the peak's turn, or the count is off):
  it is printed as a measurement error, not as a result.

Benchmarks (cpu-profile sizes; SAE inputs are synthetic activations of the same width, since speed does not depend
on their content; the AM and harvest benchmarks use random-init networks of the profile's architectures):
  sae          SAE training steps (both arms) for the 512-wide hidden layers and the full-size 4096 -> 12,288
               SAE, as a share of the peak;
  sklearn      scikit-learn's MiniBatchDictionaryLearning tuned to the SAE's L0 on the same vectors: the time
               each needs to reach the explained variance sklearn ends at;
  actmax       64 units of the last hidden layer rendered in one batch against one unit at a time, and the
               batched CNN run as a share of the peak;
  harvest      harvest_activations against a bare forward pass of the same model over the same images (the
               CIFAR-10 test split: ``Data/`` or ``$CIFAR10_JPG``, as for the study).
Writes a JSON table (``--out``) that the README quotes.
"""
import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import actmax
from helpers import sae as saelib
from helpers.train import random_model


def interleaved(fns, repeats):
    """Run each of ``fns`` ({name: callable}) once per repeat, in turns; returns {name: [seconds per repeat]}."""
    for fn in fns.values():  # warm-up: first-call allocations and kernel selection are not what we measure
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def spread(values):
    """(median, lowest, highest)."""
    return statistics.median(values), min(values), max(values)


def flops_of(fn):
    """Floating-point operations of one call of ``fn``, as PyTorch counts them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak_fn(shapes, repeat=5):
    """A callable that multiplies float32 matrices of ``shapes`` [(m, k, n), ...] ``repeat`` times each, and the
    FLOP it does: the peak is measured on the shapes the measured code uses."""
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]

    def run():
        for a, b in mats:
            for _ in range(repeat):
                a @ b
    return run, sum(2 * m * k * n for m, k, n in shapes) * repeat


def share_of_peak(name, work_flops, work_times, peak_flops, peak_times):
    """Per-repeat (work rate / peak rate); a figure above 1 is reported as a measurement error."""
    ratios = [(work_flops / w) / (peak_flops / p) for w, p in zip(work_times, peak_times)]
    median, low, high = spread(ratios)
    row = dict(benchmark=name, measure="share of float32 matmul peak", median=median, low=low, high=high,
               peak_gflops=peak_flops / statistics.median(peak_times) / 1e9,
               gflops=work_flops / statistics.median(work_times) / 1e9)
    if high > 1:
        row["error"] = "above 100% of peak: the peak's turn was slowed (a busy machine) or the count is off"
    return row


def synthetic_activations(n, d, rank=64, seed=0):
    """Non-negative activations with a low-rank structure, like a ReLU layer's."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g) / rank ** 0.5)


def bench_sae(repeats, quick):
    """Bare training steps (``sae.train_step``: forward, loss, backward, Adam, decoder norm) of an SAE built as
    ``train_sae`` builds it, on batches of 256; no set-up, resampling or logging in the window. TopK's AuxK runs
    with 5% of the latents dead (its gradient path is then part of every step, as in training)."""
    sizes = [(512, 20 if quick else 50)] + ([] if quick else [(4096, 5)])
    for d, steps in sizes:
        acts = synthetic_activations(20000 if d == 512 else 8192, d)
        f = 3 * d
        for arm in saelib.ARMS:
            sae = saelib.new_sae(acts, arm, 32, 3, seed=0)
            opt = torch.optim.Adam(sae.parameters(), lr=saelib.learning_rate(arm, f))
            batches = [acts[i * 256:(i + 1) * 256] for i in range(steps)]
            dead = torch.arange(f) % 20 == 0

            def one_step(x=batches[0]):
                saelib.train_step(sae, opt, x, 1e-3, dead)

            def work():
                for x in batches:
                    saelib.train_step(sae, opt, x, 1e-3, dead)
            # Per step: encoder and decoder forward (2 matmuls), their backward (4): batch 256.
            peak_fn, peak_flops = matmul_peak_fn([(256, d, f), (256, f, d), (d, 256, f), (256, d, f)],
                                                 repeat=max(1, steps // 4))
            times = interleaved({"peak": peak_fn, "work": work}, repeats)
            row = share_of_peak(f"sae {arm} {d}->{f}", flops_of(one_step) * steps, times["work"], peak_flops,
                                times["peak"])
            row["ms_per_step"] = statistics.median(times["work"]) / steps * 1000
            yield row


def bench_sklearn(quick, target_l0=32):
    """Time to the same held-out explained variance, at matched L0, on the same vectors (512 wide, 1,536 atoms)."""
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    d = 512
    acts = synthetic_activations(4000 if quick else 8000, d, seed=1)
    train, held = acts[:-2000], acts[-2000:]
    mean, scale = train.mean(0), (train - train.mean(0)).pow(2).sum(1).mean().sqrt()
    z_train, z_held = ((train - mean) / scale).numpy(), ((held - mean) / scale).numpy()

    def matched(l0):
        return abs(l0 - target_l0) <= 0.25 * target_l0

    def fit_sklearn(alpha):
        dl = MiniBatchDictionaryLearning(n_components=3 * d, alpha=alpha, batch_size=256, max_iter=1,
                                         fit_algorithm="cd", transform_algorithm="lasso_cd", transform_alpha=alpha,
                                         positive_code=True, random_state=0)
        start = time.perf_counter()
        dl.fit(z_train)
        codes = dl.transform(z_held)
        seconds = time.perf_counter() - start
        recon = codes @ dl.components_
        ev = 1 - ((z_held - recon) ** 2).sum() / ((z_held - z_held.mean(0)) ** 2).sum()
        return seconds, float(ev), float((codes > 0).sum(1).mean())

    # Tune alpha to the SAE's L0: a search on the log scale (each fit is a full sklearn run).
    low, high, best = 1e-3, 1.0, None
    for _ in range(3 if quick else 6):
        alpha = (low * high) ** 0.5
        seconds, ev, l0 = fit_sklearn(alpha)
        if best is None or abs(l0 - target_l0) < abs(best[3] - target_l0):
            best = (alpha, seconds, ev, l0)
        low, high = (alpha, high) if l0 > target_l0 else (low, alpha)
    alpha, sk_seconds, sk_ev, sk_l0 = best
    # The SAE (l1 arm, its calibrated λ) at growing step counts, each from scratch: the first that reaches sklearn's
    # held-out explained variance at the target L0 gives the SAE's time. (λ needs a few hundred steps to settle, so
    # a short run's L0 is off target and does not count.)
    sae_seconds, sae_ev, sae_l0 = None, None, None
    for steps in (100, 200, 400, 800, 1600):
        start = time.perf_counter()
        sae, _ = saelib.train_sae(train, "l1", target_l0=target_l0, steps=steps, progress=False, device="cpu")
        seconds = time.perf_counter() - start
        metrics, _ = saelib.reconstruction_metrics(sae, held)
        sae_seconds, sae_ev, sae_l0 = seconds, metrics["explained_variance"], metrics["l0"]
        if sae_ev >= sk_ev and matched(sae_l0):
            break
    reached = sae_ev >= sk_ev and matched(sae_l0)
    row = dict(benchmark="sae vs sklearn MiniBatchDictionaryLearning", measure="time ratio sklearn / SAE",
               median=sk_seconds / sae_seconds if reached else float("nan"),
               sklearn=dict(alpha=alpha, seconds=sk_seconds, explained_variance=sk_ev, l0=sk_l0),
               sae=dict(seconds=sae_seconds, explained_variance=sae_ev, l0=sae_l0, reached=reached),
               vectors=len(train))
    if not (matched(sk_l0) and matched(sae_l0)):
        row["error"] = (f"sparsity not matched (target L0 {target_l0} ± 25%: sklearn {sk_l0:.0f}, SAE {sae_l0:.0f}): "
                        "the ratio would compare different results")
    return [row]


def bench_actmax(repeats, quick):
    units, steps = (16, 8) if quick else (64, 16)
    for family in ("cnn", "mlp"):
        net = random_model(family, "cpu")
        settings = dict(parameterization="fft", steps=steps, progress=False)
        targets = list(range(units))
        batched = lambda: actmax.render(net, actmax.unit("hidden", targets), **settings)  # noqa: E731
        looped = lambda: [actmax.render(net, actmax.unit("hidden", [u]), **settings) for u in targets]  # noqa: E731
        times = interleaved({"batched": batched, "looped": looped}, max(2, repeats // 2))
        ratios = [lp / b for lp, b in zip(times["looped"], times["batched"])]
        yield dict(benchmark=f"actmax {family}: {units} units in one batch vs one at a time",
                   measure="speed-up", median=spread(ratios)[0], low=spread(ratios)[1], high=spread(ratios)[2])
        if family == "cnn":
            work_flops = flops_of(batched)
            peak_fn, peak_flops = matmul_peak_fn([(units * 256, 64, 64)], repeat=steps)  # a conv as a matmul
            times = interleaved({"peak": peak_fn, "work": batched}, repeats)
            yield share_of_peak(f"actmax cnn batched ({units} images)", work_flops, times["work"], peak_flops,
                                times["peak"])


def bench_harvest(repeats, quick):
    from helpers.data import load_cifar10, to_float
    images = load_cifar10("test", verbose=False)[0]
    for family in ("cnn", "mlp"):
        net = random_model(family, "cpu")

        @torch.no_grad()
        def bare():
            for i in range(0, len(images), 500):  # the batch size harvest_activations uses
                net(to_float(images[i:i + 500]))

        def harvest():
            saelib.harvest_activations(net, "hidden", "test", cache=False)
        times = interleaved({"bare": bare, "harvest": harvest}, max(2, repeats // 2) if quick else repeats)
        ratios = [b / h for b, h in zip(times["bare"], times["harvest"])]
        median, low, high = spread(ratios)
        yield dict(benchmark=f"harvest {family} hidden layer (10,000 images)",
                   measure="throughput vs a bare forward pass", median=median, low=low, high=high)


def save(out, table):
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    tmp.replace(out)


def machine_description():
    """What the figures were measured on (the benchmarks' tables carry it)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return dict(cpu=cpu, threads=torch.get_num_threads(), torch=torch.__version__,
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a smoke check)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    machine = machine_description()
    print(f"{machine}; {repeats} interleaved repeats per figure (median [lowest, highest])")
    rows = []
    for bench in (lambda: bench_sae(repeats, args.quick), lambda: bench_actmax(repeats, args.quick),
                  lambda: bench_harvest(repeats, args.quick), lambda: bench_sklearn(args.quick)):
        for row in bench():
            rows.append(row)
            figure = (f"{row['median']:.0%}" if "peak" in row["measure"] else f"x{row['median']:.2f}")
            rng = f" [{row['low']:.0%}, {row['high']:.0%}]" if "peak" in row["measure"] else \
                (f" [x{row['low']:.2f}, x{row['high']:.2f}]" if "low" in row else "")
            extra = (f" ({row['gflops']:.1f} of {row['peak_gflops']:.1f} GFLOP/s)" if "gflops" in row else "")
            extra += f", {row['ms_per_step']:.1f} ms/step" if "ms_per_step" in row else ""
            if "sklearn" in row:
                sk, sa = row["sklearn"], row["sae"]
                extra = (f": sklearn {sk['seconds']:.1f} s to EV {sk['explained_variance']:.3f} at L0 {sk['l0']:.1f}; "
                         f"SAE {sa['seconds']:.1f} s to EV {sa['explained_variance']:.3f} at L0 {sa['l0']:.1f}"
                         + ("" if sa["reached"] else " (did not reach sklearn's EV)"))
            status = f"  MEASUREMENT ERROR: {row['error']}" if "error" in row else ""
            print(f"{row['benchmark']:<58} {row['measure']:<34} {figure}{rng}{extra}{status}", flush=True)
            save(Path(args.out), dict(machine=machine, repeats=repeats, quick=args.quick, rows=rows))  # kept on a crash
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
