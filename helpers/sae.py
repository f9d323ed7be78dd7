"""Dictionary learning on a hidden layer: the sparse autoencoder of Bricken et al. 2023 (*Towards Monosemanticity*).

    x_n = x / scale                          (scale makes E||x_n - mean||^2 = 1: l1 means the same for every model)
    f   = ReLU(W_enc (x_n - b_dec) + b_enc)  (features, ``expansion`` times as many as inputs)
    x^  = (W_dec f + b_dec) * scale          (decoder columns kept at unit norm)
    loss = ||x^_n - x_n||^2 + l1 * ||f||_1
"""
import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import trange

from helpers import data as cifar
from helpers.models import record, resolve_layer
from helpers.paths import cached, data_dir


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in, expansion=3, scale=1.0, b_dec=None, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = d_in * expansion
        w_dec = torch.randn(d_in, d, generator=g)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=0, keepdim=True))
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())  # untied, initialized as the transpose
        self.b_enc = nn.Parameter(torch.zeros(d))
        self.b_dec = nn.Parameter(torch.zeros(d_in) if b_dec is None else b_dec.clone().float())
        self.register_buffer("scale", torch.tensor(float(scale)))  # inputs are divided by it (see the module doc)

    @property
    def n_features(self):
        return self.W_enc.shape[0]

    def encode(self, x):
        return F.relu((x / self.scale - self.b_dec) @ self.W_enc.T + self.b_enc)

    def decode(self, f):
        return (f @ self.W_dec.T + self.b_dec) * self.scale

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_gradient(self):
        """Project out the gradient component along each decoder column (it would only change its norm)."""
        if self.W_dec.grad is not None:
            self.W_dec.grad -= (self.W_dec.grad * self.W_dec).sum(0, keepdim=True) * self.W_dec


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


# ----------------------------------------------------------------------------- activations

def fingerprint(model):
    """A short hash of a model's weights (for activation-cache keys)."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def harvest_activations(model, layer, split, augment_copies=0, batch_size=500, seed=0, cache=True):
    """Activations of ``layer`` (e.g. ``'hidden'``) for every image of a CIFAR-10 split, batched.

    ``augment_copies`` adds that many crop/flip-augmented passes over the split (more activation vectors than
    images). Cached in ``Data/activations/`` keyed by the model's weights, layer, split and augmentation,
    so a rerun loads in seconds. Returns (activations float32 (N, D), labels (N,)).
    """
    name, _ = resolve_layer(model, layer)
    weights = fingerprint(model)
    path = data_dir() / "activations" / f"{weights}-{name}-{split}-aug{augment_copies}-seed{seed}.pt"
    key = dict(weights=weights, layer=name, split=split, augment_copies=augment_copies, seed=seed)
    harvest = lambda: _harvest(model, layer, split, augment_copies, batch_size, seed)  # noqa: E731
    return cached(path, key, harvest) if cache else harvest()


@torch.no_grad()
def _harvest(model, layer, split, augment_copies, batch_size, seed):
    images, labels, _ = cifar.load_cifar10(split, verbose=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    with record(model, [layer]) as acts:
        for augmented in [False] + [True] * augment_copies:
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size]
                if augmented:
                    x = cifar.augment(x, generator)
                model(cifar.to_float(x.to(device)))
                out.append(acts[layer].flatten(1).float().cpu())
    model.train(was_training)
    return torch.cat(out), labels.repeat(1 + augment_copies)


# ----------------------------------------------------------------------------- training

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


def train_sae(acts, expansion=3, l1=0.03, lr=1e-3, batch_size=1024, steps=2000, seed=0, resample_every=None,
              log_every=50, device=None, progress=True):
    """Train a ``SparseAutoencoder`` on activation vectors ``acts`` (N, D) with Adam on shuffled batches.

    Features that did not fire for ``resample_every`` steps (default: a quarter of training; 0 turns it off)
    are resampled, up to three quarters of the way through training. Returns (sae, log) where log is a list of
    dicts (step, mse, l1, l0, explained_variance, dead, resampled) every ``log_every`` steps.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.isfinite(acts).all():
        bad = (~torch.isfinite(acts)).any(1).sum().item()
        raise FloatingPointError(f"{bad} activation vectors contain NaN or inf; check the model and its checkpoint.")
    torch.manual_seed(seed)
    x_all = acts.to(device)
    sample = x_all[torch.randperm(len(x_all), device=device)[:20000]]
    scale = (sample - sample.mean(0)).pow(2).sum(1).mean().sqrt().item()  # total variance -> 1
    sae = SparseAutoencoder(acts.shape[1], expansion, scale=scale,
                            b_dec=geometric_median(sample / scale), seed=seed).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    resample_every = steps // 4 if resample_every is None else resample_every
    last_fired = torch.zeros(sae.n_features, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    order, cursor = torch.randperm(len(x_all), generator=generator, device=device), 0
    log, resampled = [], 0
    var = (sample / scale - (sample / scale).mean(0)).pow(2).sum(1).mean()
    for step in trange(1, steps + 1, desc=f"SAE {acts.shape[1]}->{sae.n_features}", disable=not progress, leave=False):
        if cursor + batch_size > len(x_all):
            order, cursor = torch.randperm(len(x_all), generator=generator, device=device), 0
        x = x_all[order[cursor:cursor + batch_size]]
        cursor += batch_size
        recon, f = sae(x)
        mse = ((recon - x) / scale).pow(2).sum(1).mean()
        sparsity = f.sum(1).mean()  # f >= 0, so this is its L1 norm
        loss = mse + l1 * sparsity
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SAE loss became {loss.item()} at step {step} (lr={lr}, l1={l1}); lower lr.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_gradient()
        opt.step()
        sae.normalize_decoder()
        with torch.no_grad():
            last_fired[(f > 0).any(0)] = step
        if resample_every and step % resample_every == 0 and step <= 0.75 * steps:
            dead = torch.nonzero(step - last_fired >= resample_every).flatten()
            resample_dead(sae, opt, dead, x_all[torch.randint(len(x_all), (min(len(x_all), 8192),),
                                                              generator=generator, device=device)])
            last_fired[dead] = step
            resampled += len(dead)
        if step % log_every == 0 or step == steps:
            with torch.no_grad():
                log.append(dict(step=step, mse=mse.item(), l1=sparsity.item(), l0=(f > 0).float().sum(1).mean().item(),
                                explained_variance=1 - mse.item() / var.item(),
                                dead=int((step - last_fired >= min(step, resample_every or steps)).sum().item()),
                                resampled=resampled))
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
                dead=int((frequency == 0).sum()), dense=int((frequency > 0.1).sum()), n_features=sae.n_features,
                n_inputs=acts.shape[1], n_vectors=len(acts)), frequency


@torch.no_grad()
def spliced_accuracy(model, layer, images, labels, replace, batch_size=500):
    """Accuracy and loss of ``model`` when ``layer``'s output is replaced by ``replace(output)``."""
    _, module = resolve_layer(model, layer)
    device = next(model.parameters()).device
    handle = module.register_forward_hook(lambda _m, _i, out: replace(out.flatten(1)).reshape(out.shape))
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


def downstream_metrics(sae, model, layer, images, labels, acts_mean):
    """The classifier with its hidden layer as is, reconstructed by the SAE, zero- and mean-ablated;
    'loss recovered' is (L_ablated - L_sae) / (L_ablated - L_original) for each ablation."""
    device = next(model.parameters()).device
    sae = sae.to(device)
    runs = {"original": lambda a: a,
            "sae": lambda a: sae(a)[0],
            "zero-ablated": lambda a: torch.zeros_like(a),
            "mean-ablated": lambda a: acts_mean.to(a.device).expand_as(a)}
    out = {name: spliced_accuracy(model, layer, images, labels, fn) for name, fn in runs.items()}
    for ablation in ("zero-ablated", "mean-ablated"):
        gap = out[ablation]["loss"] - out["original"]["loss"]
        out[f"loss recovered vs {ablation}"] = (out[ablation]["loss"] - out["sae"]["loss"]) / gap if gap else math.nan
    return out


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


def load_sae_result(profile, family):
    """The SAE that ``02_sae`` trained for (profile, family) and the settings it was trained with."""
    from helpers.paths import results_dir
    path = results_dir(profile) / f"sae_{family}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing. Run first: "
                                f"papermill notebooks/02_sae.ipynb out.ipynb -p model {family} -p profile {profile}")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    return saved["value"]["sae"].cpu().eval(), saved["key"]
