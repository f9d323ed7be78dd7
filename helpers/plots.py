"""Figures that more than one notebook draws."""
import matplotlib.pyplot as plt
import numpy as np
import torch

from helpers.sae import DENSE_FREQUENCY, dead, dense


def show_images(images, titles=None, ncols=10, size=1.3, suptitle=None):
    """A grid of images in [0, 1], (N, 3, H, W) tensors or arrays."""
    images = torch.as_tensor(images).detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * size * (1.25 if titles else 1)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def image_grid(images, titles, ncols=8, size=1.5, suptitle=None, pad=2):
    """A grid of images in [0, 1] drawn as one picture with a caption under each tile: for many images at reading
    size, an order of magnitude faster to draw than ``show_images``'s axes per image."""
    x = torch.as_tensor(images).detach().float().cpu().clamp(0, 1)
    n, _, h, w = x.shape
    nrows = int(np.ceil(n / ncols))
    cell_h, cell_w = h + pad + 9, w + pad  # 9 pixels of caption under each tile
    canvas = torch.ones(3, nrows * cell_h, ncols * cell_w)
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[:, r * cell_h:r * cell_h + h, c * cell_w:c * cell_w + w] = x[i]
    fig, ax = plt.subplots(figsize=(ncols * size, nrows * size * cell_h / cell_w))
    ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
    for i, title in enumerate(titles):
        r, c = divmod(i, ncols)
        ax.text(c * cell_w + w / 2, r * cell_h + h + 1, str(title), ha="center", va="top", fontsize=7)
    ax.axis("off")
    if suptitle:
        ax.set_title(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(records):
    """Training loss and test accuracy per epoch for one or more training records (name -> record)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, record in records.items():
        history = record["history"]
        trained = [h for h in history if h["train_loss"] is not None]  # epoch 0, the initialization, has no loss
        ax_loss.plot([h["epoch"] for h in trained], [h["train_loss"] for h in trained], marker="o", label=name)
        ax_acc.plot([h["epoch"] for h in history], [h["test_acc"] for h in history], marker="o", label=f"{name} test")
        ax_acc.plot([h["epoch"] for h in trained], [h["train_acc"] for h in trained], ls="--",
                    label=f"{name} train (augmented)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (label-smoothed)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    ax_acc.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_feature(feature_acts, images, labels, classes, index, k=8, frequency=None, title=""):
    """One feature: its top-k activating images and how its activation mass spreads over the classes."""
    acts = torch.as_tensor(feature_acts).float()
    top = acts.topk(k).indices
    fig = plt.figure(figsize=(k * 1.1 + 3.5, 2.3))
    grid = fig.add_gridspec(1, k + 3)
    for j, i in enumerate(top.tolist()):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"{classes[labels[i]]}\n{acts[i]:.2f}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[0, k:])
    mass = torch.zeros(len(classes)).index_add_(0, torch.as_tensor(labels), acts)
    ax.bar(range(len(classes)), (mass / mass.sum().clamp_min(1e-12)).numpy())
    ax.set_xticks(range(len(classes)), list(classes), rotation=90, fontsize=7)
    ax.set_title(
        "share of activation by class" + (f"\nfires on {frequency:.1%}" if frequency is not None else ""), fontsize=7
    )
    fig.suptitle(f"{title} feature {index}", fontsize=9, x=0.02, ha="left")
    fig.tight_layout()
    return fig


def plot_density(frequencies, title=""):
    """Histogram of log10 feature firing frequency (dead features shown at the left edge)."""
    freq = torch.as_tensor(frequencies).float()
    fig, ax = plt.subplots(figsize=(6, 3))
    logf = torch.log10(freq.clamp_min(1e-7))
    ax.hist(logf.numpy(), bins=50)
    ax.set(xlabel="log10 firing frequency (-7 = never fired)", ylabel="features",
           title=f"{title} feature density: {int(dead(freq).sum())} dead, {int(dense(freq).sum())} dense "
                 f"(fire on >{DENSE_FREQUENCY:.0%})")
    fig.tight_layout()
    return fig
