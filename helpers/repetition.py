"""Prediction 1's measurements of an image: whether a motif recurs in it (patch self-similarity beyond that of its
phase-randomized surrogates, the primary measure), how strongly it repeats itself periodically (the secondary peak of
its spatial autocorrelation, the concentration of its spectrum), and how much of it is saturated. ``MEASURES`` is the
registry; ``measure_controls`` the images with known answers that validate the primary one."""

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


# ----------------------------------------------------------------------------- recurring motifs

def phase_randomized(images, generator):
    """A surrogate of each image with the same power spectrum and random phases: the motifs go, the texture stays.

    The mean-free image is zero-padded to twice its size before the FFT, so the surrogate keeps its linear
    autocorrelation (what the autocorrelation and spectral measures read) rather than a circular one; one phase field
    for the three colour channels keeps their correlation. Rescaled to the image's contrast and mean; clamped to
    [0, 1]."""
    x = torch.as_tensor(images).float()
    n, _, h, w = x.shape
    mean = x.mean((2, 3), keepdim=True)
    spectrum = torch.fft.rfft2(x - mean, s=(2 * h, 2 * w))
    noise = torch.fft.rfft2(torch.randn(n, 1, 2 * h, 2 * w, generator=generator))  # phases of a real signal
    out = torch.fft.irfft2(spectrum * noise / noise.abs().clamp_min(1e-12), s=(2 * h, 2 * w))[..., :h, :w]
    out = out * ((x - mean).std((1, 2, 3), keepdim=True) / out.std((1, 2, 3), keepdim=True).clamp_min(1e-12))
    return (out + mean).clamp(0, 1)


def self_similarity(images, patch=6, stride=2, batch=64):
    """How well each image's patches find a copy of themselves elsewhere in it.

    Every ``patch``-pixel colour patch (mean removed; taken every ``stride`` pixels) is compared by cosine with every
    patch at one-pixel steps that does not overlap it; its best match counts, weighted by the patch's contrast (flat
    patches carry no motif). 1 when every patch recurs exactly. Returns one score per image."""
    x = torch.as_tensor(images).float()
    n, c, h, w = x.shape
    side = h - patch + 1
    ys, xs = torch.arange(side).repeat_interleave(side), torch.arange(side).repeat(side)
    query = ((ys % stride) == 0) & ((xs % stride) == 0)
    overlap = ((ys[query, None] - ys[None]).abs() < patch) & ((xs[query, None] - xs[None]).abs() < patch)
    out = []
    for i in range(0, n, batch):
        p = F.unfold(x[i:i + batch], patch)                       # (b, c*patch², side²)
        p = p - p.mean(1, keepdim=True)
        energy = p[:, :, query].pow(2).sum(1)                     # (b, queries)
        unit = p / p.norm(dim=1, keepdim=True).clamp_min(1e-6)
        best = (unit[:, :, query].transpose(1, 2) @ unit).masked_fill(overlap, -1.0).max(2).values
        out.append((best * energy).sum(1) / energy.sum(1).clamp_min(1e-12))
    return torch.cat(out)


def motif_score(images, surrogates=4, seed=0):
    """Recurring motifs: each image's ``self_similarity`` minus the mean over ``surrogates`` of its
    ``phase_randomized`` surrogates. A texture, blob or noise image finds as good matches in its surrogates (same
    spectrum) and scores near 0; a motif repeated at irregular positions or tiled scores well above. Seeded: the
    same images give the same scores."""
    x = torch.as_tensor(images).float()
    generator = torch.Generator().manual_seed(seed)
    surrogate = torch.stack([self_similarity(phase_randomized(x, generator)) for _ in range(surrogates)]).mean(0)
    return self_similarity(x) - surrogate


def radial_surrogate(images, generator):
    """A surrogate of each image whose power spectrum is averaged over rings of equal spatial frequency: its texture
    scale (how power falls off with frequency) stays, its lines and orientations go. A tiling's spectrum is a set of
    lines, which ``phase_randomized`` keeps (its surrogate tiles too, so ``motif_score`` subtracts part of every
    exact tiling); this surrogate does not. Each channel keeps its phase offsets from the others (one random phase
    field is added to all three), so the colours stay as correlated as the image's. Circular (no padding): only the
    ring averages are kept. Rescaled to the image's contrast and mean; clamped to [0, 1]."""
    x = torch.as_tensor(images).float()
    n, c, h, w = x.shape
    mean = x.mean((2, 3), keepdim=True)
    spectrum = torch.fft.fft2(x - mean)
    fy, fx = torch.fft.fftfreq(h) * h, torch.fft.fftfreq(w) * w
    ring = (fy[:, None] ** 2 + fx[None] ** 2).sqrt().round().long().flatten()
    rings = int(ring.max()) + 1
    power = torch.zeros(n, c, rings).index_add_(2, ring, spectrum.abs().pow(2).flatten(2))
    counts = torch.zeros(rings).index_add_(0, ring, torch.ones(len(ring)))
    amplitude = (power / counts).sqrt()[..., ring].reshape(n, c, h, w)
    phase = torch.fft.fft2(torch.randn(n, 1, h, w, generator=generator)).angle()  # the phases of a real signal
    out = torch.fft.ifft2(torch.polar(amplitude, spectrum.angle() + phase)).real
    out = out * ((x - mean).std((1, 2, 3), keepdim=True) / out.std((1, 2, 3), keepdim=True).clamp_min(1e-12))
    return (out + mean).clamp(0, 1)


def periodic_motif_score(images, surrogates=4, seed=0):
    """The companion of ``motif_score`` that does not subtract exact tilings: ``self_similarity`` minus its mean over
    ``radial_surrogate``s. It reads any recurring pattern, gratings and tilings included; white noise scores about
    0. Seeded."""
    x = torch.as_tensor(images).float()
    generator = torch.Generator().manual_seed(seed)
    surrogate = torch.stack([self_similarity(radial_surrogate(x, generator)) for _ in range(surrogates)]).mean(0)
    return self_similarity(x) - surrogate


PRIMARY_MEASURE = "motif"
# The measures, each a function of a batch of images (N, 3, H, W) in [0, 1] returning one score per image. The primary
# one is the verdict's; the others are robustness checks: the companion that keeps tilings (``periodic``), and two
# that see only the power spectrum.
MEASURES = {"motif": motif_score, "periodic": periodic_motif_score,
            "autocorrelation": lambda images: repetition_score(images)[0], "spectral": spectral_score}


def measure_controls(natural, start, n=32, seed=0):
    """Images with a known answer for the primary measure. Positive: a random 7-pixel motif stamped at 5 irregular
    positions on flat noise; a random 8-pixel tile repeated. Negative: the stamped images phase-randomized (the same
    spectrum without the motif), smooth Gaussian blobs, ``natural`` images and the optimizer's ``start`` images.
    Returns {name: (images, expected)} with expected "high" or "low"."""
    g = torch.Generator().manual_seed(seed)
    stamped = 0.5 + 0.03 * torch.randn(n, 3, 32, 32, generator=g)
    motifs = torch.rand(n, 3, 7, 7, generator=g)
    corners = torch.randint(0, 32 - 7 + 1, (n, 5, 2), generator=g)
    for i in range(n):
        for y, x in corners[i].tolist():
            stamped[i, :, y:y + 7, x:x + 7] = motifs[i]
    tiled = torch.rand(n, 3, 8, 8, generator=g).repeat(1, 1, 4, 4)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres, widths = torch.rand(n, 3, 2, generator=g) * 32, 4 + 6 * torch.rand(n, 3, generator=g)
    colours = torch.rand(n, 3, 3, generator=g)
    bumps = torch.exp(-((yy - centres[..., 0, None, None]) ** 2 + (xx - centres[..., 1, None, None]) ** 2)
                      / (2 * widths[..., None, None] ** 2))                      # (n, blobs, 32, 32)
    blobs = torch.einsum("nbc,nbhw->nchw", colours, bumps)
    return {"stamped motif": (stamped.clamp(0, 1), "high"), "tiled motif": (tiled, "high"),
            "stamped, phase-randomized": (phase_randomized(stamped.clamp(0, 1), g), "low"),
            "smooth blobs": (blobs.clamp(0, 1), "low"), "natural images": (torch.as_tensor(natural)[:n], "low"),
            "start images": (torch.as_tensor(start)[:n], "low")}


# ----------------------------------------------------------------------------- the measure across its range

DOSES = dict(contrast=(0.0, 0.1, 0.2, 0.3, 0.5, 1.0), repeats=(1, 2, 3, 4, 6, 8), size=(3, 5, 7, 9, 11),
             tiled=(0.0, 0.1, 0.2, 0.3, 0.5, 1.0), background=(0.0, 0.3, 0.6, 1.0))
DOSE_BASE = dict(contrast=0.3, repeats=4, size=7)  # what the factors not varied are held at


def stamped(background, motif, repeats, contrast, generator):
    """``motif`` (n, 3, s, s) blended into each ``background`` image at ``repeats`` random positions that do not
    overlap (fewer where they cannot fit), with weight ``contrast`` against the background beneath."""
    out = background.clone()
    n, _, size, _ = motif.shape
    side = out.shape[-1]
    for i in range(n):
        placed = []
        for y, x in torch.randint(0, side - size + 1, (200, 2), generator=generator).tolist():
            if all(abs(y - a) >= size or abs(x - b) >= size for a, b in placed):
                placed.append((y, x))
                if len(placed) == repeats:
                    break
        for y, x in placed:
            patch = out[i, :, y:y + size, x:x + size]
            out[i, :, y:y + size, x:x + size] = patch + contrast * (motif[i] - patch)
    return out.clamp(0, 1)


def dose_response_images(backgrounds, n=32, seed=0):
    """Images whose dose of recurring motif is known, to read an AM group's score on the measure's own scale: a random
    motif stamped at irregular positions on flat noise, varying one factor of ``DOSES`` at a time (its contrast, how
    many copies, its size; the others at ``DOSE_BASE``), a random 8-pixel tile covering the image at a varying
    contrast (``tiled``), and each of ``backgrounds`` ({name: images}, e.g. natural images phase-randomized and the
    optimizer's start images) under the base motif at the contrasts of ``DOSES['background']``.
    Returns [(factor, level, images)]."""
    g = torch.Generator().manual_seed(seed)
    flat = 0.5 + 0.03 * torch.randn(n, 3, 32, 32, generator=g)
    motifs = {size: torch.rand(n, 3, size, size, generator=g) for size in DOSES["size"]}
    base = {k: DOSE_BASE[k] for k in ("repeats", "contrast")}
    out = []
    for factor in ("contrast", "repeats", "size"):
        for level in DOSES[factor]:
            dose = dict(base, **{factor: level}) if factor != "size" else base
            motif = motifs[level if factor == "size" else DOSE_BASE["size"]]
            out.append((factor, level, stamped(flat, motif, dose["repeats"], dose["contrast"], g)))
    tile = torch.rand(n, 3, 8, 8, generator=g).repeat(1, 1, 4, 4)
    out += [("tiled", level, (flat + level * (tile - flat)).clamp(0, 1)) for level in DOSES["tiled"]]
    for name, images in backgrounds.items():
        x = torch.as_tensor(images).float()[:n]
        out += [(f"on {name}", level, stamped(x, motifs[DOSE_BASE["size"]][:len(x)], DOSE_BASE["repeats"], level, g))
                for level in DOSES["background"]]
    return out
