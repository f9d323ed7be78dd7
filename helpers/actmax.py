"""Activation maximization (AM): gradient ascent on the input, in the style of Lucid/Lucent.

Four small, composable parts:
  parameterizations  ``PixelImage``, ``FourierImage``: nn.Modules whose forward() returns N images in [0, 1];
  transforms         random jitter, scale and rotation applied every step (sized for 32x32 inputs);
  objectives         what to maximize, one value per image, so one batch optimizes many units at once;
  render             the loop: Adam on the image parameters, regularizers, a progress bar, a history.
What the study measures on the images is in ``helpers.repetition``; its objectives and runs in ``helpers.am_study``.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import trange

from helpers.data import gather_crops
from helpers.models import fold_batchnorm, record, resolve_layer

# ----------------------------------------------------------------------------- parameterizations

class PixelImage(nn.Module):
    """One free parameter per pixel, squashed into [0, 1] by a sigmoid."""

    def __init__(self, n, size=32, sd=0.01, generator=None):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(n, 3, size, size, generator=generator) * sd)

    def forward(self):
        return torch.sigmoid(self.logits)


def color_correlation_sqrt(images):
    """Square root of the RGB covariance of uint8 images, scaled so its largest column has norm 1.

    Multiplying decorrelated noise by it gives colours with natural image statistics (as Lucid does).
    """
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double() / 255
    cov = torch.cov(pixels)
    vals, vecs = torch.linalg.eigh(cov)
    root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    return (root / root.norm(dim=0).max()).float()


def cifar_color_matrix(n=10000):
    """``color_correlation_sqrt`` of the first ``n`` CIFAR-10 training images (what the models were trained on)."""
    from helpers.data import load_cifar10
    return color_correlation_sqrt(load_cifar10("train", verbose=False)[0][:n])


class FourierImage(nn.Module):
    """Images parameterized by their 2-D Fourier spectrum, scaled by 1/frequency^decay (so every frequency
    learns at a similar rate) and with decorrelated colour, squashed into [0, 1] by a sigmoid."""

    def __init__(self, n, size=32, sd=0.01, decay_power=1.0, color_matrix=None, generator=None):
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = (fy ** 2 + fx ** 2).sqrt()
        scale = 1.0 / freqs.clamp_min(1.0 / size) ** decay_power
        self.register_buffer("scale", scale * size / scale.norm() * math.sqrt(2))  # init spread ~ pixel init
        self.register_buffer("color", torch.eye(3) if color_matrix is None else color_matrix.float())
        self.size = size
        self.spectrum = nn.Parameter(torch.randn(n, 3, size, size // 2 + 1, 2, generator=generator) * sd)

    def forward(self):
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        image = torch.einsum("ij,njhw->nihw", self.color, image)
        return torch.sigmoid(image)


def make_image(parameterization, n, size=32, seed=0, color_matrix=None):
    generator = torch.Generator().manual_seed(seed)
    if parameterization == "pixel":
        return PixelImage(n, size, generator=generator)
    if parameterization == "fft":
        return FourierImage(n, size, color_matrix=color_matrix, generator=generator)
    raise ValueError(f"parameterization={parameterization!r} is not one of ('pixel', 'fft').")


# ----------------------------------------------------------------------------- transforms

def jitter(pixels):
    """Shift each image by up to ``pixels`` in x and y (edge pixels repeat; nothing wraps around)."""
    def transform(x, generator):
        n, _, h, w = x.shape
        padded = F.pad(x, (pixels,) * 4, mode="replicate")
        dy, dx = torch.randint(0, 2 * pixels + 1, (2, n), generator=generator).to(x.device)
        return gather_crops(padded, dy[:, None] + torch.arange(h, device=x.device),
                            dx[:, None] + torch.arange(w, device=x.device))
    return transform


def scale_rotate(scale=(0.9, 1.1), degrees=10.0):
    """Random zoom and rotation about the centre, output the same size (borders reflect)."""
    def transform(x, generator):
        n = len(x)
        s = torch.empty(n).uniform_(*scale, generator=generator)
        a = torch.empty(n).uniform_(-degrees, degrees, generator=generator) * math.pi / 180
        theta = torch.stack([torch.stack([a.cos() / s, -a.sin() / s, torch.zeros(n)], 1),
                             torch.stack([a.sin() / s, a.cos() / s, torch.zeros(n)], 1)], 1).to(x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return transform


def standard_transforms(jitter_pixels=2, scale=(0.92, 1.08), degrees=8.0):
    """Transforms sized for 32x32 images: a few pixels of jitter, +-8% zoom, +-8 degrees (0 turns each off).

    Lucent's defaults (12-pixel padding, 8-pixel jitter, upsampling) assume 224-pixel images; at 32 pixels they
    would crop away a third of the image and, with upsampling, tile it.
    """
    steps = []
    if jitter_pixels:
        steps.append(jitter(jitter_pixels))
    if degrees or scale != (1.0, 1.0):
        steps.append(scale_rotate(scale, degrees))
    return steps


# ----------------------------------------------------------------------------- objectives

@dataclass
class Objective:
    """What to maximize. ``values(activation of layer)`` gives every target's value on every image, (B, N);
    image i is optimized for target i, so the objective is the diagonal. ``layer='logits'`` is the output."""
    layer: str
    values: callable
    name: str
    targets: list  # the unit/class/direction index of each image; one image per target

    @property
    def n(self):
        return len(self.targets)

    @property
    def layers(self):
        """The layers whose activations the objective reads (the output is always recorded)."""
        return [] if self.layer == "logits" else [self.layer]

    def __call__(self, acts):
        return self.values(acts[self.layer]).diagonal()


class Stacked:
    """Several objectives rendered as one batch: the first ``parts[0].n`` images for the first, and so on. One
    forward and backward pass per step serves them all, which on a CPU is several times faster than a batch each
    (small batches leave the cores waiting on memory)."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.name = " + ".join(p.name for p in self.parts)
        self.n = sum(p.n for p in self.parts)
        self.layers = sorted({layer for p in self.parts for layer in p.layers})

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


def direction(layer, vectors):
    """The projection of ``layer``'s activation onto ``vectors[i]`` for image i (e.g. SAE encoder rows).

    For a conv layer with vectors over channels, the projection is averaged over positions; with vectors over the
    pooled map the SAEs read (``sae.pooled``), it is taken on that pooled map.
    """
    from helpers.activations import pooled
    vectors = torch.as_tensor(vectors, dtype=torch.float32)

    def values(act):
        v = vectors.to(act.device)
        if act.ndim == 4 and v.shape[1] == act.shape[1]:
            return act.mean((2, 3)) @ v.T
        if act.ndim == 4 and v.shape[1] != act[0].numel():
            act = pooled(act)
        return act.flatten(1) @ v.T
    return Objective(layer, values, f"{layer} direction", list(range(len(vectors))))


# ----------------------------------------------------------------------------- regularizers

def total_variation(x):
    rows = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
    return rows + (x[..., :, 1:] - x[..., :, :-1]).abs().mean((1, 2, 3))


def blur_penalty(x):
    """Squared distance to a 3x3-box-blurred copy: penalizes high-frequency noise."""
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return ((x - blurred) ** 2).sum((1, 2, 3))


def penalties(x, l2=0.0, l1=0.0, tv=0.0, blur=0.0):
    """Per-image penalty; L2/L1 measure distance from mid-grey (0.5), summed over pixels."""
    total = torch.zeros(len(x), device=x.device)
    if l2:
        total = total + l2 * ((x - 0.5) ** 2).sum((1, 2, 3))
    if l1:
        total = total + l1 * (x - 0.5).abs().sum((1, 2, 3))
    if tv:
        total = total + tv * total_variation(x)
    if blur:
        total = total + blur * blur_penalty(x)
    return total


# ----------------------------------------------------------------------------- the render loop

@dataclass
class AMResult:
    images: torch.Tensor   # (N, 3, 32, 32) in [0, 1], on the CPU
    history: torch.Tensor  # (steps, N) objective value per step
    start: torch.Tensor    # the optimizer's starting images (a baseline for the repetition score)


def render(model, objective, parameterization="fft", steps=256, lr=0.05, transforms=None, l2=0.0, l1=0.0,
           tv=0.0, blur=0.0, seed=0, color_matrix=None, size=32, progress=True):
    """Maximize ``objective`` on ``model`` for all its N targets at once, in one batch.

    ``transforms`` defaults to ``standard_transforms()``; pass ``[]`` for none. Returns an ``AMResult``.
    """
    device = next(model.parameters()).device
    transforms = standard_transforms() if transforms is None else transforms
    net = fold_batchnorm(model)  # eval-mode BatchNorm inside the convolutions: fewer layers to run every step
    image = make_image(parameterization, objective.n, size, seed, color_matrix).to(device)
    generator = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(image.parameters(), lr=lr)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        start = image().cpu()
    history = []
    layers = objective.layers
    try:
        for _ in trange(steps, desc=objective.name, disable=not progress, leave=False):
            x = image()
            seen = x
            for t in transforms:
                seen = t(seen, generator)
            with record(net, layers) as acts:
                acts["logits"] = net(seen)
                value = objective(acts)
            loss = -value.sum() + penalties(x, l2, l1, tv, blur).sum()
            # Only the image needs a gradient: autograd.grad skips the model's weights entirely.
            grads = torch.autograd.grad(loss, list(image.parameters()))
            for p, g in zip(image.parameters(), grads):
                p.grad = g
            opt.step()
            history.append(value.detach())  # kept on the device: no synchronization per step
    finally:
        net.train(was_training)
    with torch.no_grad():
        return AMResult(images=image().cpu(), history=torch.stack(history).cpu(), start=start)


# ----------------------------------------------------------------------------- objectives on a network's layers

def layer_objective(model, layer, units):
    """Whole channels for conv layers (their mean over positions), single units for dense layers.

    For a ReLU layer the objective is its input, the pre-activation (as Lucid does): a ReLU unit that is off at
    the starting image has no gradient, so its image would never move."""
    layer = preactivation(model, layer)
    return (channel if is_conv(model, layer) else unit)(layer, units)


def preactivation(model, layer):
    """The module feeding ``layer`` if ``layer`` is a ReLU inside an nn.Sequential, else ``layer`` itself."""
    name, module = resolve_layer(model, layer)
    parent, _, index = name.rpartition(".")
    if isinstance(module, nn.ReLU) and index.isdigit() and int(index) > 0:
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
