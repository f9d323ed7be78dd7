"""Image parameterizations: nn.Modules whose forward() returns N images in [0, 1] (pixels, or a decorrelated
Fourier basis with natural colour statistics)."""
import math

import torch
from torch import nn


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
