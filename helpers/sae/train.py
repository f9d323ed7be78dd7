"""Training SAEs of either arm, many as one stack: one step, resampling and a log entry, and the loop that calls
them."""
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from helpers.progress import trange
from helpers.sae.losses import auxk_loss, l1_penalty, mse_loss
from helpers.sae.model import Entries, SAEStack, SparseAutoencoder, geometric_median, silent

ARMS = ("l1", "topk")
CALIBRATE_UNTIL = 0.6   # share of training during which λ follows the L0 target (l1 arm)
RESAMPLE_UNTIL = 0.5    # dead features are resampled up to this share of training
# Adam's learning rate per arm for a dictionary of REFERENCE_FEATURES, scaled by sqrt(REFERENCE_FEATURES / features).
# Measured on the cpu models' last hidden layers (1,536 features): at 3e-3 (1,000 steps of 512) the L1 arm left
# 21-58% of the features dead; at 1e-3 (1,000 steps of 256) 2-5%, with EV 0.71 (MLP) and 0.99 (CNN). TopK at 1e-3 left
# 26% of the CNN's latents dead, at 3e-4 4%. The scaling: with these rates unscaled, the planted 96-feature dictionary
# of the tests was 19% (L1) and 9% (TopK) recovered in 1,500 steps; at 4x (= sqrt(1536 / 96)) 91% and 87%.
LEARNING_RATES = {"l1": 1e-3, "topk": 3e-4}
REFERENCE_FEATURES = 1536
# The weight of the auxiliary loss (topk arm). Gao et al. use 1/32 with billions of inputs; with 256,000 here the
# CNN layer (38 principal components hold 99% of its variance) kept 45% of its latents dead at 1/32, 4% at 1/4
# (500 steps of 512).
AUXK_COEFFICIENT = 1 / 4
# A CPU stack's budget. Stacking buys x1.0-1.13 at 512 -> 1,536 (benchmarks/stacked.json), where the cpu profile's
# six SAEs per arm and layer fit in 1.14 GB (stack_bytes), and x0.90-1.06 at 4096 -> 12,288, where one SAE alone
# exceeds it (3.9 GB): so small SAEs stack and full-size ones train one at a time.
CPU_STACK_BYTES = 2 * 2**30
# The C allocator keeps freed blocks for reuse, so a process's resident peak exceeds its live tensors: stacks of 1-3
# SAEs of 1024 -> 3,072 peaked at up to 1.16 times the bound without this factor (5 runs each, 2-core AMD EPYC).
ALLOCATOR_SLACK = 1.5
# The L1 arm's step runs on the code's nonzeros (the decoder's product and every backward product, ``Entries``)
# while at most this share of a batch's code is nonzero, and dense above it (early in training). The TopK arm's step
# always does.
SPARSE_STEP_SHARE = 0.1
RESAMPLE_VECTORS = 8192  # resampling draws its new directions from this many training vectors
MEMORY_VARIABLE = "INTERPRET_MLP_SAE_MEMORY_GIB"


def new_optimizer(stack, arm, lr=None):
    """Adam for ``stack`` at ``lr`` (default ``learning_rate(arm, its number of features)``), fused: one pass over
    each parameter per step instead of several, which at the full-size SAE is a sixth of a CPU step."""
    return torch.optim.Adam(stack.parameters(), lr=lr or learning_rate(arm, stack.n_features), fused=True)


def _reset_adam(opt, param, i, index):
    """Zero Adam's moment estimates for rows ``index`` of SAE ``i``'s slice of ``param``."""
    state = opt.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][i].index_fill_(0, index, 0.0)


@torch.no_grad()
def resample_dead(stack, opt, i, dead, x, generator=None):
    """Bricken et al.'s resampling in SAE ``i`` of ``stack``: each dead feature gets a new direction, drawn from
    inputs ``x`` with probability proportional to their squared reconstruction error; its encoder row is that
    direction scaled to 0.2 of the mean alive encoder norm, its bias 0, and its Adam state is reset."""
    if len(dead) == 0:
        return
    sae = stack.sae(i)
    recon, _ = sae(x)
    err = ((recon - x) / sae.scale).pow(2).sum(1)
    if err.sum() <= 0:
        return
    pick = torch.multinomial(err, len(dead), replacement=len(dead) > len(x), generator=generator)
    directions = x[pick] / sae.scale - sae.b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = torch.ones(stack.n_features, dtype=torch.bool, device=x.device)
    alive[dead] = False
    enc_norm = stack.W_enc[i][alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0, device=x.device)
    stack.W_dec[i, dead] = directions
    stack.W_enc[i, dead] = directions * enc_norm * 0.2
    stack.b_enc[i, dead] = 0.0
    for param in (stack.W_dec, stack.W_enc, stack.b_enc):
        _reset_adam(opt, param, i, dead)


def new_sae(acts, arm, target_l0, expansion, seed):
    """An SAE for ``acts`` (scale from their total variance, decoder bias at their geometric median)."""
    if arm not in ARMS:
        raise ValueError(f"arm={arm!r} is not one of {ARMS}.")
    g = torch.Generator(device=acts.device).manual_seed(seed)
    sample = acts[torch.randperm(len(acts), generator=g, device=acts.device)[:20000]]
    scale = (sample - sample.mean(0)).pow(2).sum(1).mean().sqrt().item()  # total variance -> 1
    return SparseAutoencoder(acts.shape[1], expansion, scale=scale, b_dec=geometric_median(sample / scale),
                             seed=seed, k=round(target_l0) if arm == "topk" else None).to(acts.device)


def learning_rate(arm, n_features):
    """Adam's default learning rate for an SAE of ``arm`` with ``n_features`` features (see ``LEARNING_RATES``)."""
    return LEARNING_RATES[arm] * math.sqrt(REFERENCE_FEATURES / n_features)


def train_step(stack, opt, x, l1_coefficients, aux_dead):
    """One Adam step of every SAE of ``stack`` on its block of ``x`` (S, B, D): the arm's loss (MSE plus λ·L1 with
    each SAE's λ in ``l1_coefficients`` (S,), or plus AuxK on the latents ``aux_dead`` (S, F)), then the decoder's
    rows back to unit norm. Returns (mse (S,), how often each feature fired in the batch (S, F)), detached."""
    if stack.k is None:
        pre = stack.pre_activations(x)  # with a graph, for the dense form; the sparse form reads its values only
        fired = (pre.detach() > 0).sum(1, dtype=pre.dtype)
        if fired.sum() <= SPARSE_STEP_SHARE * pre.numel():  # the code's nonzeros only (SPARSE_STEP_SHARE)
            active = Entries.of_mask(pre.detach() > 0)
            values = stack.pre_activations_at(x, pre.detach(), active)  # positive: the ReLU passes their gradient
            recon = stack.decode_sparse(values, active)
            l1 = values.new_zeros(len(stack)).index_add(0, active.rows // x.shape[1], values) / x.shape[1]
        else:
            f = F.relu(pre)
            recon, l1 = stack.decode(f), l1_penalty(f)
        mse = mse_loss(stack, x, recon)
        loss = mse + l1_coefficients * l1
    else:
        # the encoder's product without a graph; the selected latents' values get theirs at their own cost
        # (``pre_activations_at``). Selecting among pre-activations rather than their ReLU changes only which
        # zero-valued latents fill a vector with fewer than k positive ones: they decode and fire as nothing.
        with torch.no_grad():
            pre = stack.pre_activations(x)
        top = pre.topk(stack.k, dim=-1)
        chosen = Entries.of_indices(top.indices, stack.n_features)
        recon = stack.decode_sparse(F.relu(stack.pre_activations_at(x, pre, chosen)), chosen)
        mse = mse_loss(stack, x, recon)
        loss = mse + AUXK_COEFFICIENT * auxk_loss(stack, x, recon, pre, aux_dead, k_aux=x.shape[-1] // 2)
        fired = torch.zeros_like(pre[:, 0]).scatter_add_(1, top.indices.flatten(1),
                                                         (top.values > 0).flatten(1).to(pre.dtype))
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"SAE loss became {loss[~torch.isfinite(loss)][0].item()}")
    opt.zero_grad(set_to_none=True)
    loss.sum().backward()  # the SAEs share no parameter: each slice's gradient is its own loss's
    stack.remove_parallel_gradient()
    opt.step()
    stack.normalize_decoder()
    return mse.detach(), fired.detach()


def dense_topk_loss(stack, x, dead, k_aux):
    """The TopK arm's (mse, loss) in its textbook form, a dense (B, F) code and AuxK from a dense code of the dead
    latents: the reference of the training step's sparse form (its test and ``benchmarks/run_all.py``)."""
    pre = stack.pre_activations(x)
    top = torch.relu(pre).topk(stack.k, dim=-1)
    recon = stack.decode(torch.zeros_like(pre).scatter(-1, top.indices, top.values))
    mse = mse_loss(stack, x, recon)
    residual = ((x - recon) / stack.scale[:, None, None]).detach()
    aux = []
    for pre_i, w_dec, residual_i, dead_i in zip(pre, stack.W_dec, residual, dead):
        columns = torch.nonzero(dead_i).flatten()
        if len(columns) == 0:
            aux.append(pre.new_zeros(()))
            continue
        chosen = pre_i[:, columns].topk(min(k_aux, len(columns)), dim=1)
        code = torch.zeros(len(pre_i), len(columns), device=pre.device).scatter(1, chosen.indices, chosen.values)
        aux.append((code @ w_dec[columns] - residual_i).pow(2).sum(1).mean())
    return mse, mse + AUXK_COEFFICIENT * torch.stack(aux)


def resample_step(stack, opt, i, x_all, last_fired, step, window, generator):
    """Bricken's resampling of SAE ``i``'s features silent for ``window`` steps (``last_fired``: its features' last
    firing step), towards badly reconstructed inputs drawn from ``x_all``. Returns how many were resampled."""
    renew = torch.nonzero(silent(last_fired, step, window)).flatten()
    sample = torch.randint(len(x_all), (min(len(x_all), RESAMPLE_VECTORS),), generator=generator, device=x_all.device)
    resample_dead(stack, opt, i, renew, x_all[sample], generator)
    last_fired[renew] = step
    return len(renew)


def log_entry(step, mse, l0, silent_features, l1_coefficient, resampled):
    """One row of the training log that the convergence gate reads (``verdict.final_drift``)."""
    return dict(step=step, mse=mse, l0=l0, explained_variance=1 - mse, silent=silent_features,
                l1_coefficient=l1_coefficient, resampled=resampled)


def _check_activations(acts):
    shapes = {tuple(a.shape) for a in acts}
    if len(shapes) != 1:
        raise ValueError(f"SAEs trained as one stack need activations of one shape; got {sorted(shapes)}.")
    for a in acts:
        if not torch.isfinite(a).all():
            bad = (~torch.isfinite(a)).any(1).sum().item()
            raise FloatingPointError(f"{bad} activation vectors contain NaN or inf; check the model and its "
                                     f"checkpoint.")


def stack_bytes(n_saes, n_sets, n_vectors, n_inputs, n_features, batch_size):
    """An estimate, with a margin, of the bytes a stack of ``n_saes`` SAEs of ``n_inputs`` -> ``n_features``
    (float32) holds while it trains on ``n_sets`` distinct activation sets of ``n_vectors`` vectors in batches of
    ``batch_size``: per SAE its weights, their gradients, Adam's two moments and a step's (batch, features)
    intermediates; once per stack the activation sets, and a resampling's copy of one SAE (half as much again while
    it is built) with its pass over up to ``RESAMPLE_VECTORS`` vectors; all times ``ALLOCATOR_SLACK``, measured on a
    CPU (``tests/test_sae.py`` checks a small case in a subprocess). Not measured on a GPU."""
    parameters = 2 * n_inputs * n_features + n_features + n_inputs
    per_sae = 4 * parameters + 6 * batch_size * n_features
    resampling = 1.5 * parameters + min(n_vectors, RESAMPLE_VECTORS) * 2 * (n_features + n_inputs)
    return int(ALLOCATOR_SLACK * 4 * (n_saes * per_sae + n_sets * n_vectors * n_inputs + resampling))


def stack_bytes_of(acts, stack, expansion, batch_size):
    """``stack_bytes`` of the SAEs on ``acts[i]`` for i in ``stack`` (the same set is held once)."""
    n, d = acts[0].shape
    return stack_bytes(len(stack), len({id(acts[i]) for i in stack}), n, d, expansion * d, batch_size)


def plan_stacks(acts, expansion, batch_size, budget):
    """``acts`` (activation sets of one shape) split into consecutive stacks, lists of indices, each within
    ``budget`` bytes by ``stack_bytes``; a stack of one where a single SAE alone exceeds it."""
    stacks = [[0]]
    for i in range(1, len(acts)):
        if stack_bytes_of(acts, stacks[-1] + [i], expansion, batch_size) <= budget:
            stacks[-1].append(i)
        else:
            stacks.append([i])
    return stacks


def memory_budget(device):
    """The bytes a stack of SAEs may hold on ``device``: $INTERPRET_MLP_SAE_MEMORY_GIB where set; on a GPU half its
    free memory; on a CPU the smaller of half the available memory and ``CPU_STACK_BYTES``."""
    setting = os.environ.get(MEMORY_VARIABLE)
    if setting:
        try:
            gib = float(setting)
        except ValueError:
            gib = math.nan
        if not gib > 0:
            raise ValueError(f"${MEMORY_VARIABLE}={setting!r} is not a positive number of GiB; set it to the memory "
                             f"a stack of SAEs may hold (for example 4), or unset it for the default.")
        return int(gib * 2**30)
    if torch.device(device).type == "cuda":
        return free_memory(device) // 2
    return min(free_memory(device) // 2, CPU_STACK_BYTES)


def free_memory(device):
    """The bytes free on ``device``: a GPU's free memory, or MemAvailable of /proc/meminfo (``CPU_STACK_BYTES``
    twice over where there is no such file)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 2 * CPU_STACK_BYTES


def train_saes(acts, arm="l1", seeds=(0,), **settings):
    """``iter_saes`` as a list of (sae, log)."""
    return list(iter_saes(acts, arm, seeds, **settings))


def iter_saes(acts, arm="l1", seeds=(0,), target_l0=32, expansion=3, lr=None, batch_size=256, steps=1000,
              l1_start=0.05, log_every=25, device=None, progress=True, memory=None):
    """Train one ``SparseAutoencoder`` of ``arm`` ('l1' or 'topk') per pair of activation vectors ``acts[i]``
    (N, D) and seed ``seeds[i]``, in stacks (``train_stack``) that each hold at most ``memory`` bytes by
    ``stack_bytes`` (by default ``memory_budget(device)``), besides the SAEs yielded. Each SAE's seed sets its
    initialization, its batch order and its resampling draws, so it comes out as ``train_sae`` would train it alone,
    in whichever stack (to float tolerance, not bitwise: a stack's batched products sum in their own order, as a
    change of thread count does). Yields each (sae, log) once its stack has trained, so a caller that saves it and
    lets it go holds no more than one stack's SAEs at a time.

    Both arms reach the same sparsity: TopK keeps ``target_l0`` features; the L1 arm's λ is calibrated on the fly,
    per SAE (see the package doc). Each log is a list of dicts (step, mse, l0, explained_variance, silent,
    l1_coefficient, resampled) every ``log_every`` steps, from which the convergence gate reads. ``lr``: Adam's
    learning rate, by default ``learning_rate(arm, number of features)``.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    acts, seeds = list(acts), list(seeds)
    if len(acts) != len(seeds) or not acts:
        raise ValueError(f"one seed per activation set: got {len(acts)} sets and seeds={seeds}.")
    _check_activations(acts)
    if not target_l0 > 0:
        raise ValueError(f"target_l0={target_l0!r} must be positive.")
    settings = dict(arm=arm, target_l0=target_l0, expansion=expansion, lr=lr, batch_size=batch_size, steps=steps,
                    l1_start=l1_start, log_every=log_every, device=device, progress=progress)
    n, d = acts[0].shape
    one, free = stack_bytes(1, 1, n, d, expansion * d, batch_size), free_memory(device)
    if one > free:
        warnings.warn(f"one SAE of {d} -> {expansion * d} on {n} vectors needs about {one / 2**30:.1f} GiB "
                      f"(stack_bytes), more than the {free / 2**30:.1f} GiB free on {device}; it may run out of "
                      "memory.", ResourceWarning, stacklevel=2)
    for stack in plan_stacks(acts, expansion, batch_size, memory_budget(device) if memory is None else memory):
        yield from train_stack([acts[i] for i in stack], [seeds[i] for i in stack], **settings)


def train_stack(acts, seeds, arm, target_l0, expansion, lr, batch_size, steps, l1_start, log_every, device, progress):
    """``train_saes``'s SAEs of ``acts`` and ``seeds`` as one ``SAEStack`` with Adam. The same tensor may appear
    several times (it is then held once)."""
    held = {id(a): a for a in acts}  # each distinct tensor once on the device
    index = {key: i for i, key in enumerate(held)}
    data = torch.stack([a.to(device) for a in held.values()]) if len(held) > 1 else acts[0].to(device)[None]
    source = torch.tensor([index[id(a)] for a in acts], device=device)[:, None]
    stack = SAEStack([new_sae(data[index[id(a)]], arm, target_l0, expansion, seed) for a, seed in zip(acts, seeds)])
    lr = lr or learning_rate(arm, stack.n_features)
    opt = new_optimizer(stack, arm, lr)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    n = data.shape[1]

    def shuffled():
        return torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])
    order, cursor = shuffled(), 0
    last_fired = torch.zeros(len(stack), stack.n_features, dtype=torch.long, device=device)
    dead_window = max(20, steps // 20)          # topk: latents silent this long get the AuxK gradient
    resample_every = max(1, steps // 5)         # Bricken's resampling, at 20% and 40% of training
    calibrating = stack.k is None               # l1: λ follows the L0 target, then stays fixed
    log_l1 = torch.full((len(stack),), math.log(l1_start), device=device)
    logs, resampled = [[] for _ in seeds], [0] * len(seeds)
    name = f"{len(seeds)} SAE{'s' if len(seeds) > 1 else ''} {arm} {data.shape[-1]}->{stack.n_features}"
    for step in trange(1, steps + 1, desc=name, disable=not progress, leave=False):
        if cursor + batch_size > n:
            order, cursor = shuffled(), 0
        x = data[source, order[:, cursor:cursor + batch_size]]
        cursor += batch_size
        try:
            mse, fired = train_step(stack, opt, x, log_l1.exp(), silent(last_fired, step, dead_window))
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} at step {step} ({arm}, lr={lr}); lower lr.") from None
        last_fired[fired > 0] = step
        calibrating = calibrating and step <= CALIBRATE_UNTIL * steps
        l0 = fired.sum(1) / len(x[0])
        if calibrating:
            log_l1 = (log_l1 + 0.02 * (l0.clamp_min(0.1) / target_l0).log()).clamp(-12.0, 5.0)
        if step % resample_every == 0 and step <= RESAMPLE_UNTIL * steps:
            for i in range(len(stack)):
                resampled[i] += resample_step(stack, opt, i, data[source[i, 0]], last_fired[i], step,
                                              resample_every, generators[i])
        if step % log_every == 0 or step == steps:  # read back from the device only here
            quiet = silent(last_fired, step, min(step, dead_window)).sum(1)
            l1 = log_l1.exp() if stack.k is None else torch.zeros_like(log_l1)
            for i, row in enumerate(zip(mse.tolist(), l0.tolist(), quiet.tolist(), l1.tolist())):
                logs[i].append(log_entry(step, *row, resampled[i]))
    opt.state.clear()  # Adam's moments and the gradients go before the SAEs are copied out of the stack
    stack.zero_grad(set_to_none=True)
    return [(sae.eval(), log) for sae, log in zip(stack.unstack(), logs)]


def train_sae(acts, arm="l1", seed=0, **settings):
    """One SAE of ``arm`` on ``acts`` (N, D): ``train_saes`` with a stack of one. Returns (sae, log)."""
    return train_saes([acts], arm, [seed], **settings)[0]
