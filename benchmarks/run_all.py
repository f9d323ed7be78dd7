"""Every benchmark of the study's hot loops, in one process, each measured against its baseline interleaved.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results.json]

Most of its time goes to scikit-learn and the full-size SAE; ``--quick`` leaves the full-size rows out.

How the figures are made, so that a ratio can be trusted:
- the measured code and its baseline run in turns (A B A B ...), several repeats, in this one process; each
  figure is the median of the per-repeat ratios, with the lowest and highest beside it;
- the hardware limit ("peak") is the best of repeated float32 runs of the very operations the measured code does
  at its shapes, taken in the same turns: matrix multiplies for the SAE, the network's own convolutions (forward and
  back to the input) for activation maximization; the measured code's floating-point work is counted by PyTorch's
  FlopCounterMode on one step, not estimated by hand;
- a figure above 100% of peak cannot be right (the count is off, or the machine was busy in every turn of the
  peak): it is printed as a measurement error, not as a result.

Benchmarks (cpu-profile sizes; SAE inputs are synthetic activations of the same width, since speed does not depend
on their content; the AM and harvest benchmarks use random-init networks of the profile's architectures, the
CNN's BatchNorm statistics taken from 2,000 CIFAR-10 test images):
  sae          SAE training steps (both arms) for the 512-wide hidden layers and the full-size 4096 -> 12,288
               SAE, as a share of the peak; and the same matmuls in bfloat16 against float32 (whether bf16
               autocast could pay on this machine);
  stacked      SAEs of one layer trained as one stack (helpers.sae.SAEStack) against one by one, same steps;
  sklearn      scikit-learn's MiniBatchDictionaryLearning tuned to the SAE's L0 on the same CNN activations:
               the time each needs to reach the explained variance the weaker of the two ends at;
  actmax       64 units of the last hidden layer rendered in one batch against one unit at a time; the batched
               CNN as a share of the peak of its convolutions (and of the matmul peak), also at VGG13_bn's full
               size; BatchNorm folding's speed-up, and its change to the images' objective values and repetition
               scores against the change between two seeds;
  partners     the held-out match's partner search on a sparse code against the dense product it replaced;
  harvest      harvest_activations against a bare forward pass of the same model over the same images (the
               CIFAR-10 test split: ``Data/`` or ``$CIFAR10_JPG``, as for the study).
Writes a JSON table (``--out``) that the README quotes.
"""
import argparse
import json
import math
import platform
import statistics
import time
import warnings
from pathlib import Path
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import activations, actmax, repetition
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


def ratio_row(benchmark, measure, ratios):
    """A row of per-repeat ratios: their median, lowest and highest."""
    return dict(benchmark=benchmark, measure=measure, **dict(zip(("median", "low", "high"), spread(ratios))))


def flops_of(fn):
    """Floating-point operations of one call of ``fn``, as PyTorch counts them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak_fn(shapes, repeat=5):
    """A callable that multiplies float32 matrices of ``shapes`` [(m, k, n), ...] ``repeat`` times each, and the
    FLOP it does: the peak is measured on the shapes the measured code uses. Products go into buffers allocated
    once, so the peak is not slowed by allocating (at 4096 x 12,288, fresh 200 MB outputs cost a tenth)."""
    mats = [(torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)) for m, k, n in shapes]

    def run():
        for a, b, out in mats:
            for _ in range(repeat):
                torch.matmul(a, b, out=out)
    return run, sum(2 * m * k * n for m, k, n in shapes) * repeat


def conv_peak_fn(net, n_images, repeat):
    """A callable that runs every convolution of ``net`` alone, forwards and back to its input (what activation
    maximization needs), on inputs of the shapes it sees with ``n_images`` images, ``repeat`` times; and the FLOP
    it does: the peak of the very convolutions the measured code runs, in its precision (float32)."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape)))
             for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(n_images, 3, 32, 32))
    for h in hooks:
        h.remove()
    convs = [(m.weight.detach(), m.bias.detach(), m.padding, torch.randn(shape)) for m, shape in seen]

    def run():
        for _ in range(repeat):
            for weight, bias, padding, x in convs:
                x = x.requires_grad_()[:]  # a view: the gradient is taken with respect to a non-leaf, as in AM
                y = torch.nn.functional.conv2d(x, weight, bias, padding=padding)
                torch.autograd.grad(y, x, torch.ones_like(y))
    return run, flops_of(run)


def share_of_peak(name, work_flops, work_times, peak_flops, peak_times, peak="float32 matmul peak"):
    """Each repeat's work rate against the peak: the best rate of all the peak's repeats (one slowed turn of the
    peak, say by another process, does not lower it). A figure above 1 means the count is off or the peak's turns
    were all slowed: it is reported as a measurement error."""
    best = peak_flops / min(peak_times)
    ratios = [work_flops / w / best for w in work_times]
    median, low, high = spread(ratios)
    row = dict(benchmark=name, measure=f"share of {peak}", median=median, low=low, high=high,
               peak_gflops=best / 1e9, gflops=work_flops / statistics.median(work_times) / 1e9)
    if high > 1:
        row["error"] = "above 100% of peak: the count is off, or every turn of the peak was slowed (a busy machine)"
    return row


def synthetic_activations(n, d, rank=64, seed=0):
    """Non-negative activations with a low-rank structure, like a ReLU layer's."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g) / rank ** 0.5)


def bench_sae(repeats, quick):
    """Bare training steps (``sae.train_step``: forward, loss, backward, Adam, decoder norm) of one SAE (a stack of
    one) built as ``train_sae`` builds it, on batches of 256; no set-up, resampling or logging in the window. TopK's
    AuxK runs with 5% of the latents dead (its gradient path is then part of every step, as in training)."""
    sizes = [(512, 20 if quick else 50)] + ([] if quick else [(4096, 5)])
    for d, steps in sizes:
        acts = synthetic_activations(20000 if d == 512 else 8192, d)
        f = 3 * d
        for arm in saelib.ARMS:
            stack = saelib.SAEStack([saelib.new_sae(acts, arm, 32, 3, seed=0)])
            opt = saelib.new_optimizer(stack, arm)
            batches = [acts[i * 256:(i + 1) * 256][None] for i in range(steps)]
            dead = (torch.arange(f) % 20 == 0)[None]
            lam = torch.full((1,), 1e-3)

            def one_step(x=batches[0]):
                saelib.train_step(stack, opt, x, lam, dead)

            def work():
                for x in batches:
                    saelib.train_step(stack, opt, x, lam, dead)
            # Per step: encoder and decoder forward (2 matmuls), their backward (4): batch 256.
            peak_fn, peak_flops = matmul_peak_fn([(256, d, f), (256, f, d), (d, 256, f), (256, d, f)],
                                                 repeat=max(1, steps // 4))
            times = interleaved({"peak": peak_fn, "work": work}, repeats)
            row = share_of_peak(f"sae {arm} {d}->{f}", flops_of(one_step) * steps, times["work"], peak_flops,
                                times["peak"])
            row["ms_per_step"] = statistics.median(times["work"]) / steps * 1000
            yield row
    yield bfloat16_matmuls(512, repeats)  # (only at 512: emulated bf16 at 4096 -> 12,288 would take minutes)


def bench_stacked(repeats, quick):
    """Several SAEs of one layer and arm (as the study trains them: model seeds x SAE seeds x nulls) trained as one
    ``SAEStack`` against the same SAEs one after another, the same training steps on the same batches, interleaved:
    the speed-up of stacking. At the cpu study's size (6 SAEs, 512 -> 1,536) and the full size (2, 4096 -> 12,288)."""
    sizes = [(512, 6, 10 if quick else 30)] + ([] if quick else [(4096, 2, 3)])
    for d, n, steps in sizes:
        acts = synthetic_activations(8192, d)
        for arm in saelib.ARMS:
            saes = [saelib.new_sae(acts, arm, 32, 3, seed=s) for s in range(n)]
            singles = [saelib.SAEStack([sae]) for sae in saes]
            stack = saelib.SAEStack(saes)
            opts = [saelib.new_optimizer(m, arm) for m in singles + [stack]]
            x = torch.stack([acts[(i * 256) % 7936:(i * 256) % 7936 + 256] for i in range(n)])
            dead = (torch.arange(3 * d) % 20 == 0).expand(n, -1)

            def one_by_one():
                for _ in range(steps):
                    for i, (m, opt) in enumerate(zip(singles, opts)):
                        saelib.train_step(m, opt, x[i:i + 1], torch.full((1,), 1e-3), dead[i:i + 1])

            def stacked():
                for _ in range(steps):
                    saelib.train_step(stack, opts[-1], x, torch.full((n,), 1e-3), dead)
            times = interleaved({"one by one": one_by_one, "stacked": stacked}, repeats)
            ratios = [a / b for a, b in zip(times["one by one"], times["stacked"])]
            row = ratio_row(f"sae {arm} {d}->{3 * d}: {n} stacked vs one by one", "speed-up", ratios)
            row["ms_per_sae_step"] = statistics.median(times["stacked"]) / steps / n * 1000
            yield row


def sparse_codes(n, features, active=32, seed=0):
    """An SAE-like code: ``active`` random features of ``features`` positive per vector (2% at the study's L0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, features)
    return x.scatter_(1, torch.randint(features, (n, active), generator=g), torch.rand(n, active, generator=g))


def bench_partners(repeats, quick):
    """The held-out match's partner search (``compare.choose_partners``) on one SAE's selection half against
    another's: its sparse form (a's rows as a CSR matrix, b's z-scores) against the dense product of both sides'
    z-scores it replaced, the same partners (checked), interleaved, at the study's size (5,000 images, 1,536
    features, 32 active per image)."""
    from helpers import compare
    n = 1000 if quick else 5000
    a, b = sparse_codes(n, 1536, seed=0), sparse_codes(n, 1536, seed=1)
    wide = compare.standardize_wide(b)

    def dense():
        za, _ = compare.standardize(a)
        scores = za.T @ wide[0]
        scores[:, ~wide[1]] = -math.inf
        return scores.argmax(1)

    def sparse():
        return compare.choose_partners(compare.select_side(a), b_wide=wide)[1]
    if not torch.equal(dense(), sparse()):
        raise AssertionError("the sparse partner search chose other partners than the dense one")
    times = interleaved({"dense": dense, "sparse": sparse}, repeats)
    yield ratio_row(f"partner search {n} images, 1536 features", "speed-up vs the dense product",
                    [d / s for d, s in zip(times["dense"], times["sparse"])])


def bench_simulation(repeats, quick):
    """The rules' power simulations and the AM bootstrap: one simulated Prediction 2 study (``power.simulate_study``)
    with each statistic's units drawn in one call and intervals from one sort, against the same study with a draw
    per unit and ``torch.quantile`` (the code before the confirmatory study's speed work), interleaved; and Poisson(1)
    bootstrap weights by inverting the distribution function (``stats.poisson_one``) against ``torch.poisson``, at
    the AM bootstrap's shape (1,000 replicates of a group's images)."""
    import contextlib

    from helpers import power, stats, verdict

    def units_one_by_one(levels, noise, sae_seeds, replicates, g):
        out = {}
        for unit, level in levels.items():
            for t in range(sae_seeds):
                estimate = level + noise.between_sae_seeds * torch.randn((), generator=g) + noise.images * torch.randn(
                    (), generator=g)
                out[(unit, t)] = estimate + noise.images * torch.randn(replicates, generator=g)
        return out

    def quantile_interval(replicates, level=0.95):
        r = torch.as_tensor(replicates, dtype=torch.float64)
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        return tuple(torch.quantile(r, q).tolist())

    @contextlib.contextmanager
    def before():
        saved = power._units, stats.interval, verdict.interval
        power._units, stats.interval, verdict.interval = units_one_by_one, quantile_interval, quantile_interval
        try:
            yield
        finally:
            power._units, stats.interval, verdict.interval = saved
    studies = 5 if quick else 20

    def old():
        with before():
            return [power.simulate_study(0.75, 4, seed=i) for i in range(studies)]

    def new():
        return [power.simulate_study(0.75, 4, seed=i) for i in range(studies)]
    times = interleaved({"old": old, "new": new}, repeats)
    yield ratio_row(f"Prediction 2's power simulation, {studies} studies", "speed-up vs a draw per unit",
                    [o / n for o, n in zip(times["old"], times["new"])])
    g = torch.Generator().manual_seed(0)
    shape = (1000, 200 if quick else 2000)
    times = interleaved({"poisson": lambda: torch.poisson(torch.ones(shape, dtype=torch.float64), generator=g),
                         "inverse": lambda: stats.poisson_one(shape, g)}, repeats)
    yield ratio_row(f"Poisson(1) weights {shape[0]} x {shape[1]}", "speed-up vs torch.poisson",
                    [p / i for p, i in zip(times["poisson"], times["inverse"])])


def bench_sparse(repeats, quick):
    """Each arm's training step on the code's nonzeros against its dense form, the same steps on the same batches
    from the same SAEs, interleaved. L1: the step at ``SPARSE_STEP_SHARE`` 1 against 0, the SAEs' biases set so that
    about 32 features fire per vector, as the study's target L0. TopK (k = 32): ``train_step`` against the textbook
    step (``dense_topk_loss``), with 5% of the features silent, so AuxK has latents to train. At the cpu study's size
    (a stack of 6, 512 -> 1,536) and the full size (one SAE, 4096 -> 12,288)."""
    sizes = [(512, 6, 10 if quick else 30)] + ([] if quick else [(4096, 1, 3)])
    for arm in ("l1", "topk"):
        for d, n, steps in sizes:
            yield sparse_row(arm, d, n, steps, repeats)


def sparse_row(arm, d, n, steps, repeats):
    acts = synthetic_activations(8192, d)
    saes = [saelib.new_sae(acts, arm, 32, 3, seed=s) for s in range(n)]
    stacks = {name: saelib.SAEStack(saes) for name in ("dense", "sparse")}
    if arm == "l1":
        for stack in stacks.values():
            with torch.no_grad():  # about 32 of the 3d features fire per vector
                pre = stack.pre_activations(acts[None, :1024].expand(n, -1, -1))
                stack.b_enc -= pre.flatten(1).quantile(1 - 32 / (3 * d), dim=1)[:, None]
    opts = {name: saelib.new_optimizer(m, arm) for name, m in stacks.items()}
    x = torch.stack([acts[(i * 256) % 7936:(i * 256) % 7936 + 256] for i in range(n)])
    silent = torch.zeros(n, 3 * d, dtype=torch.bool)
    silent[:, ::20] = True

    def dense_topk_step(stack, opt):
        _, loss = saelib.dense_topk_loss(stack, x, silent, k_aux=d // 2)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        stack.remove_parallel_gradient()
        opt.step()
        stack.normalize_decoder()

    def run(name):
        def steps_of():
            with mock.patch.object(saelib.train, "SPARSE_STEP_SHARE", 0.0 if name == "dense" else 1.0):
                for _ in range(steps):
                    if arm == "topk" and name == "dense":
                        dense_topk_step(stacks[name], opts[name])
                    else:
                        saelib.train_step(stacks[name], opts[name], x, torch.full((n,), 1e-3), silent)
        return steps_of
    times = interleaved({name: run(name) for name in stacks}, repeats)
    ratios = [a / b for a, b in zip(times["dense"], times["sparse"])]
    row = ratio_row(f"sae {arm} {d}->{3 * d}: sparse vs dense step, stack of {n}", "speed-up", ratios)
    row["ms_per_step"] = statistics.median(times["sparse"]) / steps * 1000
    row["dense_ms_per_step"] = statistics.median(times["dense"]) / steps * 1000
    with torch.no_grad():
        pre = stacks["sparse"].pre_activations(x)
        row["l0_at_end"] = 32 if arm == "topk" else (pre > 0).sum(-1).float().mean().item()
    return row


def bfloat16_matmuls(d, repeats):
    """The SAE step's matmuls in bfloat16 against float32, interleaved: whether bf16 autocast could pay here. (On a
    CPU without native bf16 instructions it is emulated, and much slower: the SAEs train in float32.)"""
    shapes = [(256, d, 3 * d), (256, 3 * d, d), (d, 256, 3 * d), (256, d, 3 * d)]
    mats = {dtype: [(torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)) for m, k, n in shapes]
            for dtype in (torch.float32, torch.bfloat16)}
    times = interleaved({dtype: lambda dtype=dtype: [a @ b for a, b in mats[dtype]] for dtype in mats}, repeats)
    ratios = [f / b for f, b in zip(times[torch.float32], times[torch.bfloat16])]
    return ratio_row(f"sae matmuls {d}->{3 * d}: bfloat16 vs float32", "speed-up", ratios)


def tune_alpha(fit, target_l0, alpha=0.1, fits=6, tolerance=0.1):
    """The sparsity penalty ``alpha`` at which ``fit(alpha)`` (a dict with 'l0') lands within ``tolerance`` of
    ``target_l0``, found in few fits (each is a whole sklearn run): steps of x3 until the target is bracketed, then
    interpolation on log L0 against log alpha between the tightest bracket. Returns (alpha, result, number of fits)
    of the closest fit."""
    tried = []
    for _ in range(fits):
        result = fit(alpha)
        tried.append((alpha, result))
        if abs(result["l0"] / target_l0 - 1) <= tolerance:
            break
        dense = [t for t in tried if t[1]["l0"] > target_l0]    # alpha too small: too many atoms per vector
        sparse = [t for t in tried if t[1]["l0"] <= target_l0]
        if not (dense and sparse):
            alpha = alpha * 3 if dense else alpha / 3
            continue
        (a1, r1), (a2, r2) = max(dense, key=lambda t: t[0]), min(sparse, key=lambda t: t[0])
        y1, y2 = math.log(r1["l0"]), math.log(max(r2["l0"], 0.1))
        alpha = math.exp(math.log(a1) + (math.log(target_l0) - y1) / (y2 - y1) * (math.log(a2) - math.log(a1)))
    alpha, result = min(tried, key=lambda t: abs(math.log(max(t[1]["l0"], 0.1) / target_l0)))
    return alpha, result, len(tried)


def first_reaching(points, explained_variance, l0, tolerance=0.25):
    """The first of ``points`` (dicts with seconds, explained_variance, l0; in order of time) that reaches
    ``explained_variance`` at an L0 within ``tolerance`` of ``l0``; None if none does."""
    return next((p for p in points if p["explained_variance"] >= explained_variance
                 and abs(p["l0"] / l0 - 1) <= tolerance), None)


def bench_sklearn(quick, target_l0=32):
    """Time to the same held-out explained variance at the same L0, on the same vectors: the hidden layer of the
    cpu-profile CNN (random weights) over the CIFAR-10 test split, 512 wide; 1,536 atoms or features.

    The SAE (l1 arm, λ calibrated to ``target_l0``) is trained from scratch at growing step counts; its longest
    run's held-out L0 is the sparsity sklearn's alpha is tuned to (one epoch per fit, batches of 256). sklearn is
    then run once more at that alpha with its held-out explained variance read every few batches (the reading is
    not timed). The common bar is the lower of the two sides' best explained variance at the matched L0; each side's
    time is when it first reaches it (training time only: the SAE's train_sae, sklearn's partial fits; the time each
    takes to encode the held-out vectors is recorded beside it). One run per side, so no spread.
    """
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    acts = cnn_activations()[:4000 if quick else 8000]
    train, held = acts[:-1000], acts[-1000:]
    runs = []
    for steps in (100, 200, 400, 800, 1600):
        start = time.perf_counter()
        sae, _ = saelib.train_sae(train, "l1", target_l0=target_l0, steps=steps, progress=False, device="cpu")
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        metrics, _ = saelib.reconstruction_metrics(sae, held)
        runs.append(dict(steps=steps, seconds=seconds, explained_variance=metrics["explained_variance"],
                         l0=metrics["l0"], encode_seconds=time.perf_counter() - start))
    mean, scale = train.mean(0), (train - train.mean(0)).pow(2).sum(1).mean().sqrt()
    z_train, z_held = ((train - mean) / scale).numpy(), ((held - mean) / scale).numpy()
    order = torch.randperm(len(z_train), generator=torch.Generator().manual_seed(0)).numpy()

    def fit_sklearn(alpha, read_every=None):
        """One epoch of partial fits; the held-out reading after every ``read_every`` batches and at the end."""
        dl = MiniBatchDictionaryLearning(n_components=3 * acts.shape[1], alpha=alpha, batch_size=256,
                                         fit_algorithm="cd", transform_algorithm="lasso_cd", transform_alpha=alpha,
                                         positive_code=True, random_state=0)
        batches = [order[i:i + 256] for i in range(0, len(order), 256)]
        seconds, curve = 0.0, []
        for i, batch in enumerate(batches, 1):
            start = time.perf_counter()
            dl.partial_fit(z_train[batch])
            seconds += time.perf_counter() - start
            if i == len(batches) or (read_every and i % read_every == 0):
                start = time.perf_counter()
                codes = dl.transform(z_held)
                encode_seconds = time.perf_counter() - start
                recon = codes @ dl.components_
                ev = 1 - ((z_held - recon) ** 2).sum() / ((z_held - z_held.mean(0)) ** 2).sum()
                curve.append(dict(seconds=seconds, batches=i, explained_variance=float(ev),
                                  l0=float((codes > 0).sum(1).mean()), encode_seconds=encode_seconds))
        return curve[-1] if read_every is None else curve

    alpha, sk, fits = tune_alpha(fit_sklearn, runs[-1]["l0"], fits=4 if quick else 6)
    curve = fit_sklearn(alpha, read_every=3)
    matched_l0 = runs[-1]["l0"]
    best = [max((p["explained_variance"] for p in points if abs(p["l0"] / matched_l0 - 1) <= 0.25), default=None)
            for points in (runs, curve)]
    bar = min(best) if None not in best else None
    sae_at, sk_at = ((first_reaching(points, bar, matched_l0) for points in (runs, curve)) if bar is not None
                     else (None, None))
    row = dict(benchmark="sae vs sklearn MiniBatchDictionaryLearning", measure="time ratio sklearn / SAE",
               median=sk_at["seconds"] / sae_at["seconds"] if sae_at and sk_at else float("nan"),
               explained_variance=bar, sae=sae_at, sklearn=sk_at and dict(alpha=alpha, fits=fits, **sk_at),
               sae_runs=runs, sklearn_curve=curve, vectors=len(train), held_out=len(held))
    if bar is None:
        row["error"] = (f"sparsity not matched: sklearn's L0 {sk['l0']:.1f} after {fits} fits is not within 25% of "
                        f"the SAE's {matched_l0:.1f}; the ratio would compare different results")
    return [row]


def cnn_activations():
    """The last hidden layer of the cpu-profile CNN (random weights, BatchNorm statistics from CIFAR-10) over the
    CIFAR-10 test split: vectors with the shape and statistics of the ones the study's SAEs learn."""
    return activations.harvest_activations(cnn_with_data_statistics(), "hidden", "test", cache=False)[0]


def cnn_with_data_statistics(n_images=2000):
    """The cpu-profile CNN (random weights) with its BatchNorms' running statistics taken from the first
    ``n_images`` CIFAR-10 test images (as training leaves them), so that folding them into the convolutions is not
    the near-identity of a fresh network."""
    from helpers.data import load_cifar10, to_float
    net, images = random_model("cnn", "cpu"), load_cifar10("test", verbose=False)[0][:n_images]
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
    net.train()
    with torch.no_grad():
        for i in range(0, len(images), 500):
            net(to_float(images[i:i + 500]))
    return net.eval()


def unfolded():
    """Activation maximization as it ran before BatchNorm folding (the baseline of the folding rows)."""
    return mock.patch.object(actmax, "fold_batchnorm", lambda model: model)


def bench_compile(repeats, quick):
    """``torch.compile`` of each cpu model's training step (inductor's CPU backend) against the eager step, at one
    torch thread (as the study runs a page), the same batch and the same initial weights, interleaved; with the first
    compiled step's seconds (compilation, from inductor's on-disk cache as this machine has it)."""
    import torch.nn.functional as F

    from helpers.models import build_model, memory_format
    from helpers.train import config_for, make_optimizer
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for family in ("cnn", "resnet", "mlp"):
            config = config_for(family, "cpu")
            x = torch.rand(config["batch_size"], 3, 32, 32).contiguous(memory_format=memory_format(family))
            y = torch.randint(0, 10, (config["batch_size"],))
            steps = {}
            for name in ("eager", "compiled"):
                torch.manual_seed(0)
                model = build_model(family, **config["arch"])
                opt, _ = make_optimizer(model, config, 1000)
                forward = torch.compile(model) if name == "compiled" else model

                def step(forward=forward, opt=opt):
                    loss = F.cross_entropy(forward(x), y, label_smoothing=config["label_smoothing"])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                start = time.perf_counter()
                step()
                first = time.perf_counter() - start
                steps[name] = lambda step=step: [step() for _ in range(3 if quick else 10)]
            times = interleaved(steps, repeats)
            row = ratio_row(f"train {family} (cpu profile): compiled vs eager step, 1 thread", "speed-up",
                            [a / b for a, b in zip(times["eager"], times["compiled"])])
            row.update(first_compiled_step_seconds=first,
                       eager_ms_per_step=statistics.median(times["eager"]) / (3 if quick else 10) * 1000)
            yield row
    finally:
        torch.set_num_threads(threads)


def bench_actmax(repeats, quick):
    """Batched against one unit at a time (both models); the batched CNN as a share of the peak of its own
    convolutions (and, for context, of the float32 matmul peak); BatchNorm folding's speed-up, and its effect on
    the images against seed-to-seed noise."""
    units, steps = (16, 8) if quick else (64, 16)
    for family in ("cnn", "mlp"):
        net = cnn_with_data_statistics() if family == "cnn" else random_model(family, "cpu")
        settings = dict(parameterization="fft", steps=steps, progress=False)
        targets = list(range(units))
        batched = lambda: actmax.render(net, actmax.unit("hidden", targets), **settings)  # noqa: E731
        looped = lambda: [actmax.render(net, actmax.unit("hidden", [u]), **settings) for u in targets]  # noqa: E731
        times = interleaved({"batched": batched, "looped": looped}, max(2, repeats // 2))
        ratios = [lp / b for lp, b in zip(times["looped"], times["batched"])]
        yield ratio_row(f"actmax {family}: {units} units in one batch vs one at a time", "speed-up", ratios)
        if family != "cnn":
            continue
        yield actmax_share_of_peak(net, batched, f"actmax cnn batched ({units} images)", units, steps, repeats)

        def batched_unfolded():
            with unfolded():
                batched()
        times = interleaved({"folded": batched, "unfolded": batched_unfolded}, repeats)
        ratios = [u / f for u, f in zip(times["unfolded"], times["folded"])]
        yield ratio_row(f"actmax cnn: BatchNorm folded vs not ({units} images)", "speed-up", ratios)
        yield from folding_quality(net, targets, settings)
    if not quick:  # VGG13_bn at its published size (random weights): the convolutions a GPU user runs
        net = random_model("cnn", "official")
        batched = lambda: actmax.render(net, actmax.unit("hidden", list(range(16))), parameterization="fft",  # noqa: E731
                                        steps=2, progress=False)
        yield actmax_share_of_peak(net, batched, "actmax cnn batched, full-size VGG13_bn (16 images)", 16, 2,
                                   repeats)


def actmax_share_of_peak(net, batched, name, n_images, steps, repeats):
    conv_fn, conv_flops = conv_peak_fn(net, n_images, steps)
    mm_fn, mm_flops = matmul_peak_fn([(4096, 512, 512)], repeat=4)
    times = interleaved({"peak": conv_fn, "matmul": mm_fn, "work": batched}, repeats)
    work_flops = flops_of(batched)
    row = share_of_peak(name, work_flops, times["work"], conv_flops, times["peak"],
                        peak="its convolutions' float32 peak")
    row["share_of_matmul_peak"] = work_flops / statistics.median(times["work"]) / (mm_flops / min(times["matmul"]))
    return row


def folding_quality(net, targets, settings):
    """Folding changes the images by float rounding, which Adam's normalized steps amplify: the final objective
    values and repetition scores, folded against unfolded at the same seed, relative to the same figures between
    two seeds unfolded (the noise the study already lives with). Below 1: within noise."""
    def summary(result):
        return torch.stack([result.history[-1], repetition.repetition_score(result.images)[0]])
    objective = actmax.unit("hidden", targets)
    with unfolded():
        seed0, seed1 = (summary(actmax.render(net, objective, seed=seed, **settings)) for seed in (0, 1))
    folded = summary(actmax.render(net, objective, seed=0, **settings))
    change, noise = (folded - seed0).abs().mean(1), (seed1 - seed0).abs().mean(1)
    for i, what in enumerate(("final objective values", "repetition scores")):
        yield dict(benchmark=f"actmax cnn: BatchNorm folding's change to {what} ({len(targets)} images)",
                   measure="|folded - unfolded| / |seed 1 - seed 0|", median=(change[i] / noise[i]).item(),
                   folded_vs_unfolded=change[i].item(), seed_to_seed=noise[i].item())


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
            activations.harvest_activations(net, "hidden", "test", cache=False)
        times = interleaved({"bare": bare, "harvest": harvest}, max(2, repeats // 2) if quick else repeats)
        ratios = [b / h for b, h in zip(times["bare"], times["harvest"])]
        yield ratio_row(f"harvest {family} hidden layer (10,000 images)", "throughput vs a bare forward pass", ratios)


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


def format_row(row):
    """One printed line of the table."""
    figure = (f"{row['median']:.0%}" if "peak" in row["measure"] else
              f"{row['median']:.2f}" if "seed_to_seed" in row else f"x{row['median']:.2f}")
    rng = f" [{row['low']:.0%}, {row['high']:.0%}]" if "peak" in row["measure"] else \
        (f" [x{row['low']:.2f}, x{row['high']:.2f}]" if "low" in row else "")
    extra = (f" ({row['gflops']:.1f} of {row['peak_gflops']:.1f} GFLOP/s)" if "gflops" in row else "")
    extra += f", {row['ms_per_step']:.1f} ms/step" if "ms_per_step" in row else ""
    extra += f", {row['ms_per_sae_step']:.1f} ms per SAE and step stacked" if "ms_per_sae_step" in row else ""
    if "sklearn_curve" in row and row["sae"] and row["sklearn"]:
        sk, sa = row["sklearn"], row["sae"]
        extra = (f": to EV {row['explained_variance']:.3f}, sklearn {sk['seconds']:.1f} s ({sk['batches']} "
                 f"batches of 256, L0 {sk['l0']:.1f}, alpha {sk['alpha']:.3g}), SAE {sa['seconds']:.1f} s "
                 f"({sa['steps']} steps, L0 {sa['l0']:.1f}); their best: sklearn "
                 f"{max(p['explained_variance'] for p in row['sklearn_curve']):.3f}, SAE "
                 f"{max(r['explained_variance'] for r in row['sae_runs']):.3f}; encoding the "
                 f"{row['held_out']:,} held-out vectors: sklearn "
                 f"{row['sklearn_curve'][-1]['encode_seconds']:.2f} s, SAE "
                 f"{row['sae_runs'][-1]['encode_seconds']:.3f} s")
    if "seed_to_seed" in row:
        extra = f" ({row['folded_vs_unfolded']:.3g} vs {row['seed_to_seed']:.3g})"
    if "share_of_matmul_peak" in row:
        extra += f"; {row['share_of_matmul_peak']:.0%} of the float32 matmul peak"
    status = f"  MEASUREMENT ERROR: {row['error']}" if "error" in row else ""
    return f"{row['benchmark']:<58} {row['measure']:<34} {figure}{rng}{extra}{status}"


BENCHMARKS = ("sae", "stacked", "sparse", "partners", "simulation", "compile", "actmax", "harvest", "sklearn")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a smoke check)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run these benchmarks only")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    machine = machine_description()
    print(f"{machine}; {repeats} interleaved repeats per figure (median [lowest, highest])")
    rows = []
    benches = {"sae": lambda: bench_sae(repeats, args.quick), "stacked": lambda: bench_stacked(repeats, args.quick),
               "sparse": lambda: bench_sparse(repeats, args.quick),
               "partners": lambda: bench_partners(repeats, args.quick),
               "simulation": lambda: bench_simulation(repeats, args.quick),
               "compile": lambda: bench_compile(repeats, args.quick),
               "actmax": lambda: bench_actmax(repeats, args.quick),
               "harvest": lambda: bench_harvest(repeats, args.quick), "sklearn": lambda: bench_sklearn(args.quick)}
    for name in args.only or BENCHMARKS:
        for row in benches[name]():
            rows.append(row)
            print(format_row(row), flush=True)
            save(Path(args.out), dict(machine=machine, repeats=repeats, quick=args.quick, rows=rows))  # kept on a crash
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
