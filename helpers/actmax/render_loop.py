"""The render loop: Adam on the image parameters under the transforms, with regularizers, a progress bar and
the objective's history."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helpers.actmax.param import make_image
from helpers.actmax.transforms import grid_shift, standard_transforms
from helpers.models import fold_batchnorm, record
from helpers.progress import trange


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
           tv=0.0, blur=0.0, seed=0, color_matrix=None, size=32, progress=True, offset=0.0, span=1.0):
    """Maximize ``objective`` on ``model`` for all its N targets at once, in one batch.

    ``transforms`` defaults to ``standard_transforms()``; pass ``[]`` for none. A shift-pooled objective's images
    (``row_strides``) get a random grid shift first. The penalties are weighed against (value - ``offset``) /
    ``span`` (numbers or (N,) tensors, e.g. each target's natural-image median and spread), so one penalty weight
    means the same to every target; with no penalty they change nothing (Adam is invariant to the objective's scale).
    Returns an ``AMResult``; its history holds the objective's own values.
    """
    device = next(model.parameters()).device
    transforms = standard_transforms() if transforms is None else transforms
    strides = getattr(objective, "row_strides", None)
    if strides is not None and strides.any():
        transforms = [grid_shift(strides), *transforms]
    offset, span = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in (offset, span))
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
            loss = -((value - offset) / span).sum() + penalties(x, l2, l1, tv, blur).sum()
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
