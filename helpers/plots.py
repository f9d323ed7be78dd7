"""Figures that more than one notebook draws."""
import matplotlib.pyplot as plt
import numpy as np
import torch


def show_images(images, titles=None, ncols=10, size=1.3, suptitle=None):
    """A grid of images in [0, 1], (N, 3, H, W) tensors or arrays."""
    images = torch.as_tensor(images).detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * (1.25 if titles else 1)), squeeze=False)
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


def plot_history(records):
    """Training loss and test accuracy per epoch for one or more training records (name -> record)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, record in records.items():
        epochs = [h["epoch"] for h in record["history"]]
        ax_loss.plot(epochs, [h["train_loss"] for h in record["history"]], marker="o", label=name)
        ax_acc.plot(epochs, [h["test_acc"] for h in record["history"]], marker="o", label=f"{name} test")
        ax_acc.plot(epochs, [h["train_acc"] for h in record["history"]], ls="--", label=f"{name} train (augmented)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (label-smoothed)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    ax_acc.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance")
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
