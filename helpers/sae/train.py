"""Training an SAE of either arm: one step, resampling and a log entry, and the loop that calls them."""
import math

import torch
from tqdm.auto import trange

from helpers.sae.losses import auxk_loss, l1_penalty, mse_loss
from helpers.sae.model import SparseAutoencoder, geometric_median, silent

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


def new_optimizer(sae, arm, lr=None):
    """Adam for ``sae`` at ``lr`` (default ``learning_rate(arm, its number of features)``), fused: one pass over
    each parameter per step instead of several, which at the full-size SAE is a sixth of a CPU step."""
    return torch.optim.Adam(sae.parameters(), lr=lr or learning_rate(arm, sae.n_features), fused=True)


def _reset_adam(opt, param, index, dim):
    """Zero Adam's moment estimates for rows (dim 0) or columns (dim 1) ``index`` of ``param``."""
    state = opt.state.get(param, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key].index_fill_(dim, index, 0.0)


@torch.no_grad()
def resample_dead(sae, opt, dead, x):
    """Bricken et al.'s resampling: each dead feature gets a new direction, drawn from inputs with probability
    proportional to their squared reconstruction error; its encoder row is that direction scaled to 0.2 of the
    mean alive encoder norm, its bias 0, and its Adam state is reset."""
    if len(dead) == 0:
        return
    recon, _ = sae(x)
    err = ((recon - x) / sae.scale).pow(2).sum(1)
    if err.sum() <= 0:
        return
    pick = torch.multinomial(err, len(dead), replacement=len(dead) > len(x))
    directions = x[pick] / sae.scale - sae.b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = torch.ones(sae.n_features, dtype=torch.bool, device=x.device)
    alive[dead] = False
    enc_norm = sae.W_enc[alive].norm(dim=1).mean() if alive.any() else torch.tensor(1.0, device=x.device)
    sae.W_dec[:, dead] = directions.T
    sae.W_enc[dead] = directions * enc_norm * 0.2
    sae.b_enc[dead] = 0.0
    _reset_adam(opt, sae.W_dec, dead, 1)
    _reset_adam(opt, sae.W_enc, dead, 0)
    _reset_adam(opt, sae.b_enc, dead, 0)




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


def train_step(sae, opt, x, l1_coefficient, aux_dead):
    """One Adam step on batch ``x``: the arm's loss (MSE plus λ·L1, or plus AuxK on the latents ``aux_dead``),
    then the decoder's columns back to unit norm. Returns (mse, features), detached."""
    pre = sae.pre_activations(x)
    f = sae.activate(pre)
    recon = sae.decode(f)
    mse = mse_loss(sae, x, recon)
    if sae.k is None:
        loss = mse + l1_coefficient * l1_penalty(f)
    else:
        loss = mse + AUXK_COEFFICIENT * auxk_loss(sae, x, recon, pre, aux_dead, k_aux=x.shape[1] // 2)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"SAE loss became {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    sae.remove_parallel_gradient()
    opt.step()
    sae.normalize_decoder()
    return mse.detach(), f.detach()


def resample_step(sae, opt, x_all, last_fired, step, window, generator):
    """Bricken's resampling of the features silent for ``window`` steps, towards badly reconstructed inputs drawn
    from ``x_all``. Returns how many were resampled."""
    renew = torch.nonzero(silent(last_fired, step, window)).flatten()
    resample_dead(sae, opt, renew, x_all[torch.randint(len(x_all), (min(len(x_all), 8192),), generator=generator,
                                                       device=x_all.device)])
    last_fired[renew] = step
    return len(renew)


def log_entry(step, mse, l0, silent_features, l1_coefficient, resampled):
    """One row of the training log that the convergence gate reads (``verdict.final_drift``)."""
    mse = mse.item()
    return dict(step=step, mse=mse, l0=l0, explained_variance=1 - mse, silent=silent_features,
                l1_coefficient=l1_coefficient, resampled=resampled)


def train_sae(acts, arm="l1", target_l0=32, expansion=3, lr=None, batch_size=256, steps=1000, seed=0,
              l1_start=0.05, log_every=25, device=None, progress=True):
    """Train a ``SparseAutoencoder`` of ``arm`` ('l1' or 'topk') on activation vectors ``acts`` (N, D) with Adam.

    Both arms reach the same sparsity: TopK keeps ``target_l0`` features; the L1 arm's λ is calibrated on the fly
    (see the module doc). Returns (sae, log): log is a list of dicts (step, mse, l0, explained_variance, silent,
    l1_coefficient, resampled) every ``log_every`` steps, from which the convergence gate reads. ``lr``: Adam's
    learning rate, by default ``learning_rate(arm, number of features)``.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.isfinite(acts).all():
        bad = (~torch.isfinite(acts)).any(1).sum().item()
        raise FloatingPointError(f"{bad} activation vectors contain NaN or inf; check the model and its checkpoint.")
    if not target_l0 > 0:
        raise ValueError(f"target_l0={target_l0!r} must be positive.")
    torch.manual_seed(seed)
    x_all = acts.to(device)
    sae = new_sae(x_all, arm, target_l0, expansion, seed)
    lr = lr or learning_rate(arm, sae.n_features)
    opt = new_optimizer(sae, arm, lr)
    generator = torch.Generator(device=device).manual_seed(seed)
    order, cursor = torch.randperm(len(x_all), generator=generator, device=device), 0
    last_fired = torch.zeros(sae.n_features, dtype=torch.long, device=device)
    dead_window = max(20, steps // 20)          # topk: latents silent this long get the AuxK gradient
    resample_every = max(1, steps // 5)         # Bricken's resampling, at 20% and 40% of training
    calibrating = sae.k is None                 # l1: λ follows the L0 target, then stays fixed
    log_l1, log, resampled = math.log(l1_start), [], 0
    for step in trange(1, steps + 1, desc=f"SAE {arm} {acts.shape[1]}->{sae.n_features}", disable=not progress,
                       leave=False):
        if cursor + batch_size > len(x_all):
            order, cursor = torch.randperm(len(x_all), generator=generator, device=device), 0
        x = x_all[order[cursor:cursor + batch_size]]
        cursor += batch_size
        try:
            mse, f = train_step(sae, opt, x, math.exp(log_l1), silent(last_fired, step, dead_window))
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} at step {step} ({arm}, lr={lr}); lower lr.") from None
        fired = (f > 0)
        last_fired[fired.any(0)] = step
        calibrating = calibrating and step <= CALIBRATE_UNTIL * steps
        logging = step % log_every == 0 or step == steps
        # the batch's L0 is read back from the device only when it is used (a synchronization per read)
        l0 = fired.float().sum(1).mean().item() if calibrating or logging else None
        if calibrating:
            log_l1 = min(5.0, max(-12.0, log_l1 + 0.02 * math.log(max(l0, 0.1) / target_l0)))
        if step % resample_every == 0 and step <= RESAMPLE_UNTIL * steps:
            resampled += resample_step(sae, opt, x_all, last_fired, step, resample_every, generator)
        if logging:
            quiet = int(silent(last_fired, step, min(step, dead_window)).sum().item())
            log.append(log_entry(step, mse, l0, quiet, math.exp(log_l1) if sae.k is None else 0.0, resampled))
    return sae.eval(), log
