"""A network's layers as the study reads them: harvested over a CIFAR-10 split (cached), or several layers of a few
images at once.

A convolutional layer is read as its channels averaged over a g x g grid of positions: coarse layout is kept, and
its size (channels x g²) stays one that CKA and an SAE three times as wide can afford on a CPU. At the study's layer
pairs g is the layer table's (``profiles.readout``: the two families read at about equal size); elsewhere (the
layer map, the curve's other layers) ``POOL``.
"""
import torch
import torch.nn.functional as F

from helpers import data as cifar
from helpers import store
from helpers.models import fingerprint, record, resolve_layer

POOL = 2


def pooled(output, grid=None):
    """A layer's output as the study reads it: conv maps averaged to ``grid`` x ``grid`` positions (None: ``POOL``),
    vectors as they are."""
    return F.adaptive_avg_pool2d(output, grid or POOL) if output.dim() == 4 else output


def harvest_activations(model, layer, split, augment_copies=0, batch_size=500, seed=0, cache=True, grid=None):
    """Activations of ``layer`` (e.g. ``'hidden'``) for every image of a CIFAR-10 split, batched.

    ``augment_copies`` adds that many crop/flip-augmented passes over the split (more activation vectors than
    images). Cached in ``Data/activations/`` keyed by the model's weights, layer, split and augmentation (and the
    code: ``store.HARVEST``), so a rerun loads in seconds. ``grid``: a conv map's readout grid (``pooled``). Returns
    (activations float32 (N, D), labels (N,)).
    """
    grids = {layer: grid}
    if not cache:
        return _harvest(model, [layer], split, augment_copies, batch_size, seed, grids)[layer]
    return harvest_layers(model, [layer], split, augment_copies, batch_size, seed, grids=grids)[layer]


def harvest_layers(model, layers, split, augment_copies=0, batch_size=500, seed=0, weights=None, grids=None):
    """``harvest_activations`` of several layers: those not cached yet are read in one pass over the split, and each
    is cached as its own harvest. ``weights``: the model's ``fingerprint``, where the caller has it; ``grids``:
    {layer: its readout grid} (``pooled``; a layer not named: ``POOL``). Returns {layer: (activations, labels)}."""
    weights = weights or fingerprint(model)
    grids = grids or {}
    fields = {}
    for layer in dict.fromkeys(layers):
        inputs = dict(model=weights, layer=resolve_layer(model, layer)[0], split=split,
                      augment_copies=augment_copies, seed=seed, pool=grids.get(layer) or POOL)
        fields[layer] = ({k: v for k, v in inputs.items() if k != "pool"}, inputs)
    out = {layer: store.HARVEST.load(where, **inputs) for layer, (where, inputs) in fields.items()}
    todo = [layer for layer, value in out.items() if value is None]
    if todo:
        for layer, value in _harvest(model, todo, split, augment_copies, batch_size, seed, grids).items():
            where, inputs = fields[layer]
            out[layer] = store.HARVEST.save(where, value, **inputs)
    return out


@torch.no_grad()
def check_outputs(model, layer, outputs, images, n=250):
    """Raise unless ``outputs`` (a harvest) begin with ``layer``'s output on the first ``n`` of ``images`` (uint8), as
    this network computes it now: a harvest made from another copy of CIFAR-10 (another order, JPEG pixels) would
    otherwise be paired with the wrong images."""
    if len(outputs) != len(images):
        raise ValueError(f"outputs holds {len(outputs)} vectors for {len(images)} images: give the layer's output on "
                         f"these images, in their order, or None to run the whole network")
    if model.training:
        raise ValueError("the model is in training mode; a harvest is read in eval mode: call model.eval() first")
    device = next(model.parameters()).device
    fresh = layer_representations(model, images[:n], [layer])[layer]
    if not torch.allclose(fresh, outputs[:n].to(device), rtol=1e-4, atol=1e-5 * fresh.abs().max().item()):
        stale = store.path("activations", model=fingerprint(model), layer=resolve_layer(model, layer)[0],
                           split="test", augment_copies=0, seed=0)
        raise ValueError(f"the cached {layer} outputs are not this network's on these images (a harvest of another "
                         f"copy of CIFAR-10?): delete {stale} and run again")


@torch.no_grad()
def predicted_classes(model, test_images, weights=None):
    """The class ``model`` predicts for every test image (``test_images``: the whole test split, uint8, as
    ``load_cifar10`` gives it), from its last hidden layer's cached test harvest (the SAE pages harvest it) through
    the layers after it (``logits_from_hidden``): no pass through the whole network."""
    hidden = harvest_layers(model, ["hidden"], "test", weights=weights)["hidden"][0]
    check_outputs(model, "hidden", hidden, test_images)
    device = next(model.parameters()).device
    return torch.cat([model.logits_from_hidden(hidden[i:i + 4096].to(device)).argmax(1).cpu()
                      for i in range(0, len(hidden), 4096)])


@torch.no_grad()
def _harvest(model, layers, split, augment_copies, batch_size, seed, grids):
    images, labels, _ = cifar.load_cifar10(split, verbose=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = {layer: [] for layer in layers}
    with record(model, layers) as acts:
        for augmented in [False] + [True] * augment_copies:
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size]
                if augmented:
                    x = cifar.augment(x, generator)
                model(cifar.to_float(x.to(device)))
                for layer in layers:
                    out[layer].append(pooled(acts[layer], grids.get(layer)).flatten(1).float().cpu())
    model.train(was_training)
    return {layer: (torch.cat(v), labels.repeat(1 + augment_copies)) for layer, v in out.items()}


@torch.no_grad()
def layer_representations(model, images, layers, batch_size=500, grids=None):
    """{layer: (N, D) representation} of uint8 ``images`` for several layers in one pass (pooled like harvests, on
    ``grids``: {layer: grid})."""
    grids = grids or {}
    device = next(model.parameters()).device
    model.eval()
    out = {layer: [] for layer in layers}
    with record(model, layers) as acts:
        for start in range(0, len(images), batch_size):
            model(cifar.to_float(images[start:start + batch_size].to(device)))
            for layer in layers:
                out[layer].append(pooled(acts[layer], grids.get(layer)).flatten(1).float().cpu())
    return {layer: torch.cat(v) for layer, v in out.items()}


def linear_map(d, seed=0, condition=4.0):
    """A fixed random invertible linear map of ``d``-dimensional activations and its inverse, (M, M_inv), applied as
    ``acts @ M``: a random rotation, per-axis scales log-uniform over a ``condition``-fold range, another rotation.
    Prediction 2's sanity control: the mapped layer carries exactly the layer's features in another basis. Its
    condition is bounded so that the SAE's squared error weighs no direction more than ``condition**2`` times
    another."""
    g = torch.Generator().manual_seed(20_000 + seed)
    q1, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    scales = condition ** (torch.rand(d, generator=g, dtype=torch.float64) - 0.5)
    m = q1 @ torch.diag(scales) @ q2
    return m.float(), torch.linalg.inv(m).float()
