"""Dictionary learning on a hidden layer: sparse autoencoders in two arms, trained to the same sparsity.

    x_n = x / scale                          (scale makes E||x_n - mean||^2 = 1, the same units for every model)
    f   = ReLU(W_enc (x_n - b_dec) + b_enc)  (features, ``expansion`` times as many as inputs)
    x^  = (W_dec f + b_dec) * scale          (decoder columns kept at unit norm)

- ``l1`` arm (Bricken et al. 2023, the proposal's SAE): loss = ||x^_n - x_n||^2 + λ ||f||_1. λ is not hand-picked:
  during the first ``CALIBRATE_UNTIL`` of training a controller moves it until the batches' L0 sits at the target,
  then it is frozen.
- ``topk`` arm (Gao et al. 2024): exactly k = target L0 features are kept per input; dead latents learn from an
  auxiliary loss (AuxK) that reconstructs the residual error with the top dead latents.
In both arms dead features are resampled towards badly reconstructed inputs (Bricken et al.).

"Dead" and "dense" are defined once, here: a feature is **dead** when it fires on none of the held-out vectors
(``dead``), **dense** when it fires on more than ``DENSE_FREQUENCY`` of them (``dense``). During training a feature
is **silent** when it has not fired for a window of steps (``silent``): TopK's AuxK trains the latents silent for
``max(20, steps // 20)`` steps (the window the training log counts too), and resampling (at 20% and 40% of
training) renews the features silent for ``steps // 5`` steps, since the previous resampling.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import trange

from helpers import data as cifar
from helpers.activations import pooled
from helpers.models import resolve_layer

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
DENSE_FREQUENCY = 0.1   # a feature firing on more than this share of held-out vectors is dense


def dead(frequency):
    """Which features are dead: they fire on none of the held-out vectors (``frequency``: each one's firing rate)."""
    return torch.as_tensor(frequency) == 0


def dense(frequency):
    """Which features are dense: they fire on more than ``DENSE_FREQUENCY`` of the held-out vectors."""
    return torch.as_tensor(frequency) > DENSE_FREQUENCY


def silent(last_fired, step, window):
    """During training, which features have not fired for ``window`` steps (``last_fired``: each one's last step)."""
    return step - last_fired >= window


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in, expansion=3, scale=1.0, b_dec=None, seed=0, k=None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = d_in * expansion
        w_dec = torch.randn(d_in, d, generator=g)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=0, keepdim=True))
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())  # untied, initialized as the transpose
        self.b_enc = nn.Parameter(torch.zeros(d))
        self.b_dec = nn.Parameter(torch.zeros(d_in) if b_dec is None else b_dec.clone().float())
        self.register_buffer("scale", torch.tensor(float(scale)))  # inputs are divided by it (see the module doc)
        self.k = k  # None: ReLU code (l1 arm); an int: only the k largest features are kept (topk arm)

    @property
    def n_features(self):
        return self.W_enc.shape[0]

    def pre_activations(self, x):
        return (x / self.scale - self.b_dec) @ self.W_enc.T + self.b_enc

    def encode(self, x):
        return self.activate(self.pre_activations(x))

    def activate(self, pre):
        """The code from pre-activations: ReLU, then (topk arm) only the k largest kept."""
        f = F.relu(pre)
        if self.k is None:
            return f
        top = f.topk(self.k, dim=1)
        return torch.zeros_like(f).scatter_(1, top.indices, top.values)

    def decode(self, f):
        return (f @ self.W_dec.T + self.b_dec) * self.scale

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= column_dots(self.W_dec, self.W_dec).sqrt().clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_gradient(self):
        """Project out the gradient component along each decoder column (it would only change its norm)."""
        if self.W_dec.grad is not None:
            self.W_dec.grad.addcmul_(self.W_dec, column_dots(self.W_dec.grad, self.W_dec), value=-1)

    def to_state(self):
        """Tensors and plain numbers only: saved with torch.save and read back with ``weights_only=True``, so a
        results folder from elsewhere cannot run code when it is loaded."""
        return dict(state_dict={k: v.detach().cpu() for k, v in self.state_dict().items()}, k=self.k,
                    d_in=self.W_dec.shape[0], expansion=self.n_features // self.W_dec.shape[0])

    @classmethod
    def from_state(cls, state):
        sae = cls(state["d_in"], state["expansion"], k=state["k"])
        sae.load_state_dict(state["state_dict"])
        return sae.eval()


def geometric_median(x, iterations=50):
    """Weiszfeld's algorithm; starts at the mean."""
    y = x.mean(0)
    for _ in range(iterations):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() < 1e-6 * y.norm().clamp_min(1e-8):
            return y_new
        y = y_new
    return y


# ----------------------------------------------------------------------------- training

def column_dots(a, b, rows=256):
    """The dot products of the columns of ``a`` with those of ``b`` (both (D, F)): (F,). Summed over blocks of
    ``rows`` rows, which stay in cache: at the full-size decoder (4096 x 12,288) on a CPU a quarter of the time of
    ``(a * b).sum(0)``, which reduces along the strided dimension."""
    out = torch.zeros(a.shape[1], dtype=a.dtype, device=a.device)
    for i in range(0, a.shape[0], rows):
        out += (a[i:i + rows] * b[i:i + rows]).sum(0)
    return out


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


def mse_loss(sae, x, recon):
    """Squared reconstruction error per vector, in the normalized units (total variance 1)."""
    return ((recon - x) / sae.scale).pow(2).sum(1).mean()


def l1_penalty(f):
    return f.sum(1).mean()  # f >= 0, so this is its L1 norm


def auxk_loss(sae, x, recon, pre, dead, k_aux):
    """Gao et al.'s AuxK: the top ``k_aux`` dead latents reconstruct the residual error (a gradient for latents
    that the TopK selection never picks). Unlike Gao et al., the dead latents' pre-activations enter without the
    ReLU: a latent whose pre-activation is negative on every input would otherwise get no gradient at all. On the
    cpu CNN's low-rank last hidden layer 37% of the latents stayed dead with the ReLU, 4% without it."""
    if not dead.any():
        return pre.new_zeros(())
    residual = ((x - recon) / sae.scale).detach()
    idx = torch.nonzero(dead).flatten()  # only the dead columns: the cost follows their number, not the dictionary's
    pre_dead = pre[:, idx]
    top = pre_dead.topk(min(k_aux, len(idx)), dim=1)
    f_aux = torch.zeros_like(pre_dead).scatter(1, top.indices, top.values)
    return (f_aux @ sae.W_dec[:, idx].T - residual).pow(2).sum(1).mean()


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


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def feature_activations(sae, acts, batch_size=4096):
    device = sae.W_enc.device
    return torch.cat([sae.encode(acts[i:i + batch_size].to(device)).cpu() for i in range(0, len(acts), batch_size)])


@torch.no_grad()
def reconstruction_metrics(sae, acts, batch_size=4096):
    """MSE (normalized units), fraction of variance explained, L0, dead/dense features and firing frequencies."""
    device = sae.W_enc.device
    sse, sst, l0, fired = 0.0, 0.0, 0.0, torch.zeros(sae.n_features)
    mean = acts.mean(0).to(device)
    for i in range(0, len(acts), batch_size):
        x = acts[i:i + batch_size].to(device)
        recon, f = sae(x)
        sse += ((recon - x) / sae.scale).pow(2).sum().item()
        sst += ((x - mean) / sae.scale).pow(2).sum().item()
        l0 += (f > 0).sum().item()
        fired += (f > 0).sum(0).float().cpu()
    frequency = fired / len(acts)
    return dict(mse=sse / len(acts), explained_variance=1 - sse / sst, l0=l0 / len(acts),
                dead=int(dead(frequency).sum()), dense=int(dense(frequency).sum()), n_features=sae.n_features,
                n_inputs=acts.shape[1], n_vectors=len(acts)), frequency


@torch.no_grad()
def spliced_accuracy(model, layer, images, labels, replace, batch_size=500):
    """Accuracy and loss of ``model`` when ``layer``'s output is replaced by ``replace(output)``."""
    _, module = resolve_layer(model, layer)
    device = next(model.parameters()).device

    def splice(_module, _inputs, out):
        if out.dim() == 2:
            return replace(out)
        # a conv map is read pooled: its pooled part is swapped for the replacement, finer detail is kept
        coarse = pooled(out)
        new = replace(coarse.flatten(1)).reshape(coarse.shape)
        up = lambda t: F.interpolate(t, size=out.shape[-2:], mode="nearest")  # noqa: E731
        return out - up(coarse) + up(new)
    handle = module.register_forward_hook(splice)
    correct, loss = 0, 0.0
    try:
        for i in range(0, len(images), batch_size):
            logits = model(cifar.to_float(images[i:i + batch_size].to(device)))
            y = labels[i:i + batch_size].to(device)
            correct += (logits.argmax(1) == y).sum().item()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
    finally:
        handle.remove()
    return dict(accuracy=correct / len(images), loss=loss / len(images))


# ----------------------------------------------------------------------------- ground truth

def synthetic_dictionary_data(n, d=32, n_atoms=96, active=3, seed=0):
    """Vectors that are sparse non-negative combinations of a known overcomplete unit-norm dictionary.

    Returns (data (n, d), atoms (n_atoms, d)). Each vector uses ``active`` atoms on average with magnitudes
    in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    on = torch.rand(n, n_atoms, generator=g) < active / n_atoms
    magnitude = 0.5 + torch.rand(n, n_atoms, generator=g)
    return (on * magnitude) @ atoms, atoms


def atom_recovery(sae, atoms):
    """For each true atom, its best cosine similarity with any learned decoder column."""
    cols = sae.W_dec.detach().cpu().T
    cols = cols / cols.norm(dim=1, keepdim=True)
    return (atoms @ cols.T).max(1).values

