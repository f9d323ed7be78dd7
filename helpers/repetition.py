"""Prediction 1's measurements of an image: how strongly it repeats itself (the secondary peak of its spatial
autocorrelation, the concentration of its spectrum) and how much of it is saturated."""
import torch
import torch.nn.functional as F


def autocorrelation(images, max_lag=16):
    """Normalized spatial autocorrelation of grey-level images, lags -max_lag..max_lag in y and x.

    Linear (zero-padded, not circular) and divided by the overlap at each lag, so no wrap-around periodicity
    is created; 1 at lag 0.
    """
    x = torch.as_tensor(images).float().mean(1)  # (N, H, W) grey
    x = x - x.mean((1, 2), keepdim=True)
    n, h, w = x.shape
    spec = torch.fft.rfft2(x, s=(2 * h, 2 * w))
    ac = torch.fft.irfft2(spec * spec.conj(), s=(2 * h, 2 * w))
    ones = torch.fft.rfft2(torch.ones(h, w), s=(2 * h, 2 * w))
    overlap = torch.fft.irfft2(ones * ones.conj(), s=(2 * h, 2 * w)).round().clamp_min(1)
    ac = torch.fft.fftshift(ac / overlap, dim=(1, 2))  # lag 0 now at (h, w)
    ac = ac[:, h - max_lag:h + max_lag + 1, w - max_lag:w + max_lag + 1]
    return ac / ac[:, max_lag, max_lag].clamp_min(1e-12)[:, None, None]


def repetition_score(images, max_lag=12, exclude=1):
    """How strongly each image repeats itself: the highest *secondary* peak of its autocorrelation.

    A peak is a lag whose value is the maximum of its 3x3 neighbourhood, outside the central
    (2*exclude+1)^2 lags. A smooth or noisy image's autocorrelation falls off from lag 0 with no such peak
    of any height; a pattern that recurs every (dy, dx) pixels gives a peak there close to 1.
    Returns (score per image in [-1, 1], lag (dy, dx) per image); images with no peak score 0.
    """
    ac = autocorrelation(images, max_lag)
    is_peak = ac == F.max_pool2d(ac[:, None], 3, stride=1, padding=1)[:, 0]
    centre = torch.zeros_like(is_peak)
    centre[:, max_lag - exclude:max_lag + exclude + 1, max_lag - exclude:max_lag + exclude + 1] = True
    border = torch.ones_like(is_peak)
    border[:, 1:-1, 1:-1] = False  # a maximum on the window's edge may not be a peak
    peaks = torch.where(is_peak & ~centre & ~border, ac, torch.full_like(ac, -2.0))
    best, where = peaks.flatten(1).max(1)
    score = torch.where(best > -2, best, torch.zeros_like(best)).clamp_min(0)
    lag = torch.stack([where // ac.shape[2] - max_lag, where % ac.shape[2] - max_lag], 1)
    return score, lag


def spectral_score(images, exclude=1):
    """How concentrated each image's spatial spectrum is: the share of its power, outside the lowest frequencies,
    in the strongest 3x3 block of frequencies and its mirror image (one real sinusoid is a conjugate pair, and the
    window spreads each over a 3x3 block).

    Grey level, mean removed, Hann-windowed (so the image's edges add no spurious frequencies). Frequencies within
    ``exclude`` of zero in both directions (smooth gradients, blobs) are left out. A plane wave scores near 1, white
    noise near 0. Returns a score per image in [0, 1]."""
    x = torch.as_tensor(images).float().mean(1)
    n, h, w = x.shape
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    x = (x - x.mean((1, 2), keepdim=True)) * window
    power = torch.fft.fft2(x).abs().pow(2)
    fy, fx = torch.fft.fftfreq(h) * h, torch.fft.fftfreq(w) * w
    low = (fy.abs()[:, None] <= exclude) & (fx.abs()[None, :] <= exclude)
    power = power.masked_fill(low, 0.0)
    block = F.avg_pool2d(F.pad(power[:, None], (1, 1, 1, 1), mode="circular"), 3, stride=1)[:, 0] * 9
    total = power.flatten(1).sum(1).clamp_min(1e-12)
    return (2 * block.flatten(1).max(1).values / total).clamp(max=1.0)


def saturated_share(images, tolerance=1 / 255):
    """Share of each image's pixel values within ``tolerance`` of 0 or 1 (clipped by the sigmoid or the clamp)."""
    x = torch.as_tensor(images).float()
    return ((x <= tolerance) | (x >= 1 - tolerance)).float().flatten(1).mean(1)
