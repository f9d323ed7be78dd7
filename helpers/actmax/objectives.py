"""What to maximize: one value per image, so one batch optimizes many units at once; objectives stack into one
batch, and name a network's layers (pre-activations, units, channels, directions)."""
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from helpers.models import record, resolve_layer


@dataclass
class Objective:
    """What to maximize. ``values(activation of layer)`` gives every target's value on every image, (B, N);
    image i is optimized for target i, so the objective is the diagonal. ``layer='logits'`` is the output."""
    layer: str
    values: callable
    name: str
    targets: list  # the unit/class/direction index of each image; one image per target
    pool_stride: int = 0  # shift-pooled (``shift_pooled``): the stride of the grid of circular shifts; 0: not pooled

    @property
    def n(self):
        return len(self.targets)

    @property
    def layers(self):
        """The layers whose activations the objective reads (the output is always recorded)."""
        return [] if self.layer == "logits" else [self.layer]

    @property
    def row_strides(self):
        """Each image's ``pool_stride``: the grid ``render`` shifts it on (0: not shifted)."""
        return torch.full((self.n,), self.pool_stride, dtype=torch.long)

    def __call__(self, acts):
        return self.values(acts[self.layer]).diagonal()


class Stacked:
    """Several objectives rendered as one batch: the first ``parts[0].n`` images for the first, and so on. One
    forward and backward pass per step serves them all, which on a CPU is several times faster than a batch each
    (small batches leave the cores waiting on memory). Shift-pooled and plain parts share a batch: each image is
    shifted on its own part's grid (``row_strides``)."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.name = " + ".join(p.name for p in self.parts)
        self.n = sum(p.n for p in self.parts)
        self.layers = sorted({layer for p in self.parts for layer in p.layers})
        self.row_strides = torch.cat([p.row_strides for p in self.parts])

    def slices(self):
        """The rows of each part in the batch."""
        ends = np.cumsum([0] + [p.n for p in self.parts])
        return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]

    def __call__(self, acts):
        return torch.cat([p.values(acts[p.layer][rows]).diagonal() for p, rows in zip(self.parts, self.slices())])


def _index(indices):
    return torch.as_tensor(indices, dtype=torch.long).reshape(-1)


def class_logit(classes):
    """Logit of class ``classes[i]`` for image i."""
    idx = _index(classes)
    return Objective("logits", lambda out: out[:, idx.to(out.device)], "classes", idx.tolist())


def unit(layer, units):
    """A single unit of ``layer`` per image: a neuron of a dense layer, or the centre position of a conv channel."""
    idx = _index(units)

    def values(act):
        if act.ndim == 4:
            act = act[:, :, act.shape[2] // 2, act.shape[3] // 2]
        return act.flatten(1)[:, idx.to(act.device)]
    return Objective(layer, values, f"{layer} unit", idx.tolist())


def channel(layer, channels):
    """A whole conv channel of ``layer`` (its mean over positions) per image."""
    idx = _index(channels)
    return Objective(layer, lambda act: act.mean((2, 3))[:, idx.to(act.device)], f"{layer} channel", idx.tolist())


def shift_pooled(objective, stride=8):
    """``objective`` averaged over circularly shifted copies of the image, on the grid of shifts by multiples of
    ``stride`` pixels in y and x (16 copies of a 32-pixel image at stride 8): it asks for an image that drives the
    target wherever its content sits. Exactly invariant to a circular shift of the input by a multiple of
    ``stride``. ``render`` optimizes it with one random grid shift per image and step (an unbiased estimate of the
    mean); ``helpers.am_study.objective_values`` evaluates the whole grid, or a sample of a large one
    (``am_study.evaluated_shifts``)."""
    if stride < 1:
        raise ValueError(f"stride={stride}: use a positive number of pixels (8 for 32-pixel images).")
    return replace(objective, name=f"{objective.name}, shift-pooled", pool_stride=stride)


def shift_grid(size, stride):
    """The (dy, dx) circular shifts of ``shift_pooled``: every multiple of ``stride`` below ``size`` in y and x."""
    steps = torch.arange(0, size, stride)
    return torch.cartesian_prod(steps, steps)


def direction(layer, vectors):
    """The projection of ``layer``'s activation onto ``vectors[i]`` for image i (e.g. SAE encoder rows).

    For a conv layer with vectors over channels, the projection is averaged over positions; with vectors over the
    pooled map the SAEs read (``activations.pooled``), it is taken on that map, whose grid the vectors' length gives
    (channels x g²).
    """
    from helpers.activations import pooled
    vectors = torch.as_tensor(vectors, dtype=torch.float32)

    def values(act):
        v = vectors.to(act.device)
        if act.ndim == 4 and v.shape[1] == act.shape[1]:
            return act.mean((2, 3)) @ v.T
        if act.ndim == 4 and v.shape[1] != act[0].numel():
            act = pooled(act, round(math.sqrt(v.shape[1] / act.shape[1])))
        return act.flatten(1) @ v.T
    return Objective(layer, values, f"{layer} direction", list(range(len(vectors))))




def layer_objective(model, layer, units):
    """Whole channels for conv layers (their mean over positions), single units for dense layers.

    For a ReLU layer the objective is its input, the pre-activation (as Lucid does): a ReLU unit that is off at
    the starting image has no gradient, so its image would never move."""
    layer = preactivation(model, layer)
    return (channel if is_conv(model, layer) else unit)(layer, units)


# Elementwise nonlinearities whose output an objective should not read: a ReLU is flat below 0 (no gradient at an
# image that turns it off), a GELU or SiLU falls below about -0.75 (ascent from there drives it to 0 from below).
NONLINEARITIES = (nn.ReLU, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU)


def preactivation(model, layer):
    """The module feeding ``layer`` if ``layer`` is a nonlinearity (``NONLINEARITIES``) inside an nn.Sequential,
    else ``layer`` itself."""
    name, module = resolve_layer(model, layer)
    parent, _, index = name.rpartition(".")
    if isinstance(module, NONLINEARITIES) and index.isdigit() and int(index) > 0:
        return f"{parent}.{int(index) - 1}"
    return name


def _probe(model, layer):
    with torch.no_grad(), record(model, [layer]) as acts:
        model(torch.full((1, 3, 32, 32), 0.5, device=next(model.parameters()).device))
    return acts[layer]


def is_conv(model, layer):
    return _probe(model, layer).ndim == 4


def layer_width(model, layer):
    """Number of units of a dense layer, or channels of a conv layer."""
    return _probe(model, layer).shape[1]
