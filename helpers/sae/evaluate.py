"""An SAE on held-out activations: its features, reconstruction metrics, the classifier with the layer spliced,
and a planted dictionary with a known answer."""

import torch
import torch.nn.functional as F

from helpers import data as cifar
from helpers.activations import check_outputs, pooled
from helpers.models import resolve_layer
from helpers.sae.model import dead, dense


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
def spliced_accuracies(model, layer, images, labels, replacements, batch_size=500, outputs=None, grid=None):
    """Accuracy and loss of ``model`` with ``layer``'s output replaced by each of ``replacements`` (functions of the
    output), in one pass over ``images``: the layers before ``layer`` run once per batch and the rest once per
    replacement, on a batch stacked from every replacement's output. ``outputs``: the layer's output on ``images``
    where it is at hand (a cached harvest): at the model's last hidden layer only the layers after it then run
    (``logits_from_hidden``). ``grid``: the readout grid a conv map is read on (``activations.pooled``). Returns one
    dict per replacement."""
    name, module = resolve_layer(model, layer)
    device = next(model.parameters()).device
    n = len(replacements)

    def spliced(out):
        if out.dim() == 2:
            return torch.cat([replace(out) for replace in replacements])
        # a conv map is read pooled: its pooled part is swapped for the replacement, finer detail is kept
        coarse = pooled(out, grid)
        up = lambda t: F.interpolate(t, size=out.shape[-2:], mode="nearest")  # noqa: E731
        return torch.cat([out - up(coarse) + up(replace(coarse.flatten(1)).reshape(coarse.shape))
                          for replace in replacements])
    if outputs is not None and name == model.hidden_layer:
        check_outputs(model, layer, outputs, images)
        # a copy: a replacement may change its input in place, and the harvest is read again after this
        def logits_of(i):
            return model.logits_from_hidden(spliced(outputs[i:i + batch_size].to(device, copy=True)))
        handle = None
    else:
        def logits_of(i):
            return model(cifar.to_float(images[i:i + batch_size].to(device)))
        handle = module.register_forward_hook(lambda _m, _i, out: spliced(out))
    correct, loss = torch.zeros(n), torch.zeros(n, dtype=torch.float64)
    try:
        for i in range(0, len(images), batch_size):
            y = labels[i:i + batch_size].to(device)
            logits = logits_of(i).reshape(n, len(y), -1)
            correct += (logits.argmax(-1) == y).sum(1).cpu()
            loss += F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction="none").reshape(n, -1).sum(1).cpu()
    finally:
        if handle is not None:
            handle.remove()
    return [dict(accuracy=c / len(images), loss=v / len(images)) for c, v in zip(correct.tolist(), loss.tolist())]


def spliced_accuracy(model, layer, images, labels, replace, batch_size=500, grid=None):
    """Accuracy and loss of ``model`` when ``layer``'s output is replaced by ``replace(output)``."""
    return spliced_accuracies(model, layer, images, labels, [replace], batch_size, grid=grid)[0]


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
