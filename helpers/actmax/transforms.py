"""The random transforms applied to the images every step, sized for 32x32 inputs."""
import math

import torch
import torch.nn.functional as F

from helpers.data import gather_crops


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


def circular_shift(x, dy, dx):
    """Each image rolled by its own (dy[i], dx[i]) pixels, wrapping around."""
    n, _, h, w = x.shape
    rows = (dy.to(x.device)[:, None] + torch.arange(h, device=x.device)) % h
    cols = (dx.to(x.device)[:, None] + torch.arange(w, device=x.device)) % w
    return gather_crops(x, rows, cols)


def grid_shift(stride):
    """Roll each image by a random multiple of ``stride`` pixels in y and x (a shift-pooled objective's copies):
    one stride for all, or each image's own, (N,) (0: that image stays)."""
    def transform(x, generator):
        n, _, h, w = x.shape
        strides = torch.as_tensor(stride).expand(n)
        cells = torch.tensor([h, w])[:, None] // strides.clamp_min(1)  # the grid's positions in y and x
        dy, dx = (torch.rand(2, n, generator=generator) * cells).long() * strides
        return circular_shift(x, dy, dx)
    return transform
