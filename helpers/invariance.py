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


def shift_invariance(model, images, layers, shifts=SHIFTS):
    """Each layer's invariance to circular shifts of uint8 or float ``images``, per shift in pixels (the mean of a
    horizontal and a vertical shift), beside the pixels' own: {layer or 'pixels': {shift: invariance}}, and the gain
    over the pixels, {layer: {shift: invariance - the pixels'}}."""
    x = cifar.to_float(images) if images.dtype == torch.uint8 else images.float()
    base = layer_outputs(model, x, layers)
    raw = {name: {} for name in ("pixels", *layers)}
    for s in shifts:
        moved = {axis: shift_images(x, s, axis) for axis in AXES}
        outputs = {axis: layer_outputs(model, m, layers) for axis, m in moved.items()}
        raw["pixels"][s] = sum(unit_invariance(x.flatten(1), m.flatten(1)) for m in moved.values()) / len(AXES)
        for layer in layers:
            raw[layer][s] = sum(unit_invariance(base[layer], o[layer]) for o in outputs.values()) / len(AXES)
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
