"""The bias Prediction 1 attributes the CNN's recurring patterns to, measured without activation maximization
(issue 37): how invariant each layer is to circular shifts of the image, how test accuracy holds under shifts, and
how local the MLP's first-layer weights are.

Why not linear CKA between a layer on images and on their shifted copies: CKA compares the two Gram matrices, which
any orthogonal change of coordinates leaves unchanged. A circular shift permutes the pixels, and a shift-equivariant
layer permutes its map with them, so CKA reads 1 for the pixels and for every equivariant layer alike (and about 1
for a random dense layer, which preserves inner products): it cannot say no. The measure here keeps the coordinates
fixed: each unit's correlation, across images, between its value on an image and on the same image shifted
(``unit_invariance``), averaged over units that vary; minus the same for the pixels themselves, which natural images'
smoothness makes positive for small shifts.
"""
import torch

from helpers import data as cifar
from helpers.models import record

AXES = ("x", "y")
SHIFTS = tuple(range(1, 9))


def shift_images(images, pixels, axis):
    """``images`` (N, C, H, W) shifted circularly by ``pixels`` along ``axis`` ('x': columns, 'y': rows)."""
    if axis not in AXES:
        raise ValueError(f"axis={axis!r} is not one of {AXES}.")
    return torch.roll(images, pixels, dims=-1 if axis == "x" else -2)


def unit_invariance(before, after):
    """The mean over units (columns) that vary in both of the Pearson correlation across images (rows) between a
    unit's value on the images (``before``) and on their shifted copies (``after``): 1 for an invariant unit, about
    0 for one that sees other content after the shift. NaN if no unit varies."""
    a, b = before.double() - before.double().mean(0), after.double() - after.double().mean(0)
    sa, sb = a.norm(dim=0), b.norm(dim=0)
    varies = (sa > 1e-9 * sa.max().clamp_min(1e-300)) & (sb > 1e-9 * sb.max().clamp_min(1e-300))
    if not varies.any():
        return float("nan")
    return ((a * b).sum(0)[varies] / (sa * sb)[varies]).mean().item()


@torch.no_grad()
def layer_outputs(model, images, layers, batch_size=250):
    """{layer: (N, D)} the layers' outputs on float ``images`` in [0, 1], flattened as they are (a conv map unpooled:
    its positions are units, so an equivariant map is not counted as invariant)."""
    model.eval()
    device = next(model.parameters()).device
    out = {layer: [] for layer in layers}
    with record(model, layers) as acts:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size].to(device))
            for layer in layers:
                out[layer].append(acts[layer].flatten(1).float().cpu())
    return {layer: torch.cat(v) for layer, v in out.items()}


def invariance_rows(model, images, layers, shifts=SHIFTS, blocks=1):
    """Each layer's invariance to circular shifts of uint8 or float ``images``, per shift in pixels (the mean of a
    horizontal and a vertical shift) and per block of images (``blocks`` equal parts, each read on its own: units
    for a bootstrap over images), beside the pixels' own (layer ``"pixels"``): a list of dict(layer, shift, block,
    invariance)."""
    x = cifar.to_float(images) if images.dtype == torch.uint8 else images.float()
    base = layer_outputs(model, x, layers)
    parts = torch.arange(len(x)).chunk(blocks)
    rows = []
    for s in shifts:
        moved = {axis: shift_images(x, s, axis) for axis in AXES}
        outputs = {axis: layer_outputs(model, m, layers) for axis, m in moved.items()}
        for block, part in enumerate(parts):
            pixels = sum(unit_invariance(x[part].flatten(1), m[part].flatten(1)) for m in moved.values())
            rows.append(dict(layer="pixels", shift=s, block=block, invariance=pixels / len(AXES)))
            rows += [dict(layer=layer, shift=s, block=block, invariance=sum(
                unit_invariance(base[layer][part], o[layer][part]) for o in outputs.values()) / len(AXES))
                for layer in layers]
    return rows


def shift_invariance(model, images, layers, shifts=SHIFTS):
    """``invariance_rows`` over all images as {layer or 'pixels': {shift: invariance}}, and the gain over the pixels,
    {layer: {shift: invariance - the pixels'}}."""
    raw = {name: {} for name in ("pixels", *layers)}
    for row in invariance_rows(model, images, layers, shifts):
        raw[row["layer"]][row["shift"]] = row["invariance"]
    gain = {layer: {s: raw[layer][s] - raw["pixels"][s] for s in shifts} for layer in layers}
    return raw, gain


@torch.no_grad()
def shifted_accuracy(model, images, labels, shifts=(0, *SHIFTS), batch_size=500):
    """Test accuracy on uint8 ``images`` shifted circularly by each of ``shifts`` pixels (the mean over both axes):
    {shift: accuracy}."""
    model.eval()
    device = next(model.parameters()).device
    out = {}
    for s in shifts:
        correct = 0
        for axis in AXES:
            moved = shift_images(images, s, axis)
            for start in range(0, len(images), batch_size):
                logits = model(cifar.to_float(moved[start:start + batch_size].to(device)))
                correct += (logits.argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
        out[s] = correct / (len(AXES) * len(images))
    return out


def weight_locality(weight, side=32, window=8):
    """How local each first-layer unit of an MLP is: the share of its squared weight (over the channels) inside the
    best ``window`` x ``window`` square of the ``side`` x ``side`` image (circular), per unit. ``weight``: (units, C *
    side * side) in (C, H, W) order. A unit spread evenly over the image scores (window / side)², a unit inside one
    window 1."""
    units = weight.shape[0]
    energy = weight.detach().double().reshape(units, -1, side, side).pow(2).sum(1)  # (units, side, side)
    padded = torch.cat([energy, energy[:, :window - 1]], 1)
    padded = torch.cat([padded, padded[:, :, :window - 1]], 2)
    boxes = padded.unfold(1, window, 1).unfold(2, window, 1).sum((-1, -2))  # (units, side, side): every window
    return (boxes.flatten(1).amax(1) / energy.flatten(1).sum(1).clamp_min(1e-300)).float()


def shifted_copies(weight, side=32, threshold=0.5, chunk=32):
    """How many of an MLP's first-layer units are shifted copies of another: per unit, the highest cosine between its
    weights (C, side, side) and another unit's under any circular shift (FFT cross-correlation over the channels),
    and whether it reaches ``threshold``. Returns (best cosine per unit, share of units at or above threshold)."""
    units = weight.shape[0]
    w = weight.detach().float().reshape(units, -1, side, side)
    w = w / w.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
    spectrum = torch.fft.rfft2(w)
    best = torch.empty(units)
    for start in range(0, units, chunk):
        mine = spectrum[start:start + chunk]
        cross = torch.fft.irfft2((mine[:, None] * spectrum[None].conj()).sum(2), s=(side, side))  # (chunk, units, ..)
        top = cross.flatten(2).amax(2)
        top[torch.arange(len(mine)), torch.arange(start, start + len(mine))] = -1.0  # not itself
        best[start:start + len(mine)] = top.amax(1)
    return best, float((best >= threshold).float().mean())


def network_facts(model, images, labels, shifts=(0, 1, 2, 4, 8)):
    """The bias read off a network without any probe images: its test accuracy under circular shifts (uint8
    ``images`` with their ``labels``) and, for an MLP, how local its first-layer units are (``weight_locality``, the
    median) and the share that are shifted copies of another (``shifted_copies``). A dict."""
    accuracy = shifted_accuracy(model, images, labels, shifts)
    out = {f"accuracy_{s}px": a for s, a in accuracy.items()}
    first = getattr(model, "linear_in", None)
    if first is not None:
        out["locality"] = float(weight_locality(first.weight, model.resolution).median())
        out["shifted_copies"] = shifted_copies(first.weight, model.resolution)[1]
    return out


# ----------------------------------------------------------------------------- the study's measurement (01's last part)

# The shifts the rule reads: up to twice the training crops (2 px). At 8 px a conv map at 1/8 resolution is exactly
# permuted one position, so its units cannot be invariant there by design; those shifts are measured and shown.
GAIN_SHIFTS = (1, 2, 4)
IMAGE_BLOCKS = 5  # the test images in equal blocks, each read on its own: the bootstrap's units below the model seed


def study_layers(model):
    """The layers measured along depth: ``models.depth_layers`` and the last hidden layer."""
    from helpers.models import depth_layers
    layers = depth_layers(model)
    return layers + [model.hidden_layer] * (model.hidden_layer not in layers)


def network_rows(model, images, blocks=IMAGE_BLOCKS):
    """``invariance_rows`` of every ``study_layers`` layer, with each layer's relative depth: a list of dicts."""
    layers = study_layers(model)
    depth = {layer: (i + 1) / len(layers) for i, layer in enumerate(layers)}
    return [dict(row, depth=depth.get(row["layer"], 0.0)) for row in invariance_rows(model, images, layers,
                                                                                      SHIFTS, blocks)]


def training_gains(table):
    """Per (family, model seed, block, layer): the invariance gained by training, the trained network's minus its
    random-init network's, averaged over ``GAIN_SHIFTS`` (pandas). ``table``: rows of ``network_rows`` with family,
    model_seed and network columns."""
    rows = table[table["shift"].isin(GAIN_SHIFTS)]
    mean = rows.groupby(["family", "model_seed", "block", "layer", "network"]).invariance.mean().unstack("network")
    return (mean["trained"] - mean["random-init"]).rename("gain").reset_index()


def pair_gains(gains, modules, replicates=1000, seed=0):
    """At one layer pair (``modules``: {family: module}), each family's training gain with a hierarchical bootstrap
    interval (model seeds, then image blocks within each), and the MLP's gain as a share of the VGG's with the
    interval of the ratio of their replicates (undefined, NaN, unless the VGG's gain is above 0 across its
    interval). Returns {"cnn": dict(value, low, high), "mlp": ..., "position": ...}."""
    from helpers import stats
    out, reps = {}, {}
    for k, (family, module) in enumerate(modules.items()):  # each family's seeds drawn on their own (unrelated nets)
        part = gains[(gains.family == family) & (gains.layer == module)]
        units = {(r.model_seed, r.block): torch.full((replicates,), float(r.gain)) for r in part.itertuples()}
        reps[family] = stats.nested_average(units, replicates, seed + 1_000 * k)
        low, high = stats.interval(reps[family])
        out[family] = dict(value=float(part.groupby("model_seed").gain.mean().mean()), low=low, high=high)
    out["position"] = stats.effect_ratio(reps["mlp"], reps["cnn"], out["mlp"]["value"], out["cnn"]["value"])
    return out
