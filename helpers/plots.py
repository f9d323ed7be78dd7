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


# ----------------------------------------------------------------------------- Prediction 1 (01)

def controls_figure(controls, rows, rule, measure):
    """One example image of each known-answer control (``{name: (images, expected)}``) and the ``measure``'s scores on
    all of them (``rows``: control, score), against ``rule``'s thresholds (min_high, max_low)."""
    fig = plt.figure(figsize=(12, 5.5))
    for i, (name, (x, expected)) in enumerate(controls.items()):
        ax = fig.add_subplot(2, len(controls), i + 1)
        ax.imshow(x[0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(f"{name}\n(expected {expected})", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    names = list(controls)
    ax.boxplot([rows[rows.control == n].score.values for n in names], tick_labels=names)
    ax.axhline(rule["min_high"], color="tab:green", ls="--", lw=1, label=f"high controls' median ≥ "
                                                                      f"{rule['min_high']:g}")
    ax.axhline(rule["max_low"], color="tab:red", ls="--", lw=1, label=f"low controls' median ≤ {rule['max_low']:g}")
    ax.set(ylabel=f"{measure} score", title="The motif measure on images with a known answer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dose_response_figure(doses, medians, measures):
    """Each measure (a column of ``doses``: factor, level, one score column per measure) along each dose factor, the
    median and interquartile range per level, with the AM groups' medians (``medians``: indexed by (family, group))
    as horizontal lines to read them against the dose."""
    factors = list(doses.factor.unique())
    fig, axes = plt.subplots(len(measures), len(factors), figsize=(2.6 * len(factors), 2.8 * len(measures)),
                             squeeze=False, sharey="row")
    for row, measure in zip(axes, measures):
        for ax, factor in zip(row, factors):
            part = doses[doses.factor == factor].groupby("level", sort=False)[measure]
            q = part.quantile([0.25, 0.5, 0.75]).unstack()
            ax.fill_between(range(len(q)), q[0.25], q[0.75], color="tab:grey", alpha=0.3)
            ax.plot(range(len(q)), q[0.5], "ko-", ms=3)
            ax.set_xticks(range(len(q)), [f"{v:g}" for v in q.index], fontsize=7)
            ax.set_title(factor, fontsize=8)
            for (family, group), value in medians[measure].items():
                if family in ("cnn", "mlp") and group in ("mid", "random-init mid"):
                    ax.axhline(value, color="tab:blue" if family == "cnn" else "tab:orange",
                               ls="-" if group == "mid" else ":", lw=1)
        row[0].set_ylabel(f"{measure} score")
    axes[0, 0].plot([], [], color="tab:blue", label="CNN mid, trained (dotted: random-init)")
    axes[0, 0].plot([], [], color="tab:orange", label="MLP mid, trained (dotted: random-init)")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def am_gallery(images, rows, measure, title):
    """One AM group's images at reading size, each titled with its target, its ``measure`` score and ✓ when it
    succeeded (``rows``: the group's rows of the score table, in the images' order)."""
    titles = [f"{r.target} {getattr(r, measure):.2f}{' ✓' if r.success else ''}" for r in rows.itertuples()]
    return image_grid(images, titles, ncols=8, size=1.5,
                      suptitle=f"{title}\n(under each: target, {measure} score, ✓ success)")


def scores_figure(scored, measures, primary, profile):
    """Each measure's scores per group and family (``scored``: the successful AM images without a penalty beside
    natural and start images, with columns group, family and one per measure)."""
    import seaborn as sns
    fig, axes = plt.subplots(len(measures), 1, figsize=(13, 3.6 * len(measures)), squeeze=False)
    for ax, measure in zip(axes[:, 0], measures):
        sns.boxplot(data=scored, x="group", y=measure, hue="family", ax=ax, fliersize=2)
        label = " (primary)" if measure == primary else ""
        ax.set(xlabel="", ylabel=f"{measure} score",
               title=f"{measure}{label} score of successful AM images, no penalty ({profile})")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the SAEs (02)

def sae_training_curves(logs, target_l0, title):
    """L0, explained variance, silent share and the L1 coefficient along training, one line per arm (``logs``: {arm:
    training log, a list of dicts}), the target L0 marked."""
    import pandas as pd
    fig, axes = plt.subplots(1, 4, figsize=(15, 3))
    for arm, log in logs.items():
        log = pd.DataFrame(log)
        for ax, column in zip(axes, ["l0", "explained_variance", "silent", "l1_coefficient"]):
            ax.plot(log.step, log[column], label=arm)
            ax.set(xlabel="step", title=column.replace("_", " ") + " (training batches)")
    axes[0].axhline(target_l0, color="grey", lw=0.8, ls="--")
    axes[3].set_yscale("log")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- Prediction 2 (03)

def statistics_figure(stats, comparisons, order, comparison_labels, side_name, title):
    """Each comparison's observation, nulls and ceiling with their intervals (``stats``: the statistics rows), one
    row of panels per comparison of ``comparisons`` ((name, side a, side b)) present, one column per arm and
    direction; the statistics in ``order``, an invalid null in grey."""
    sides = {c: (a, b) for c, a, b in comparisons if c in set(stats.comparison)}
    columns = [(arm, forward) for arm in dict.fromkeys(stats.arm) for forward in (True, False)]
    fig, axes = plt.subplots(len(sides), len(columns), figsize=(4 * len(columns), 2.6 * len(sides)),
                             sharex=True, squeeze=False)
    for row, (name, (a, b)) in zip(axes, sides.items()):
        for ax, (arm, forward) in zip(row, columns):
            direction = f"{a}->{b}" if forward else f"{b}->{a}"
            part = stats[(stats.comparison == name) & (stats.arm == arm)
                         & (stats.direction == direction)].set_index("statistic")
            part = part.reindex([o for o in order if o in part.index])
            y = range(len(part))
            colors = ["C3" if k == "observed" else "C2" if k == "ceiling" else "C7" if k.startswith("ceiling-null") else
                      ("C0" if part.loc[k, "valid"] else "lightgrey") for k in part.index]
            # a shuffle null's value averages every shuffle, its interval is the first shuffle's
            ax.errorbar(part.value, y, xerr=[(part.value - part.low).clip(lower=0),
                                             (part.high - part.value).clip(lower=0)], fmt="none", ecolor=colors)
            ax.scatter(part.value, y, c=colors, zorder=3)
            ax.set(yticks=list(y), yticklabels=[k.replace("null-", "null: ") for k in part.index],
                   title=f"{comparison_labels[name].split(' (')[0]}\n{arm} arm, "
                         + " → ".join(side_name(x) for x in direction.split("->")))
            ax.invert_yaxis()
    for ax in axes[-1]:
        ax.set_xlabel("held-out r of entering features (linear arm: held-out R²)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def distributions_figure(per_feature, sources, side_name, title):
    """Per-feature held-out r as cumulative distributions (``per_feature``: the per-feature table): each source
    side's features matched in every other side, beside the question's conditional-shuffle null and ceiling; one
    row per arm, one column per side of ``sources``."""
    pf = per_feature
    arms = list(dict.fromkeys(pf.arm))
    fig, axes = plt.subplots(len(arms), len(sources), figsize=(6.5 * len(sources), 3.6 * len(arms)),
                             squeeze=False, sharex=True)
    for row, arm in zip(axes, arms):
        for ax, source in zip(row, sources):
            part = pf[(pf.arm == arm) & pf.direction.str.startswith(source + "->")]
            curves = [(f"matched in {side_name(d.split('->')[1])}", part[(part.direction == d)
                                                                        & (part.statistic == "observed")])
                      for d in part.direction.unique()]
            question = part[part.comparison == "question"]
            curves += [("null: shuffled within (class, predictions)",
                        question[question.statistic == "null-conditional-shuffle"]),
                       ("ceiling: another training seed", question[question.statistic == "ceiling"])]
            for i, (label, values) in enumerate(curves):
                r = np.sort(values.heldout_r.to_numpy())
                if len(r):
                    ax.plot(r, np.linspace(0, 1, len(r)), label=f"{label} (median {np.median(r):.2f})",
                            ls="--" if label.startswith(("null", "ceiling")) else "-",
                            color="grey" if label.startswith("null") else "C2" if label.startswith("ceiling")
                            else f"C{[0, 3, 1, 4][i % 4]}")
            ax.set(title=f"{side_name(source)}'s features, {arm} arm", xlabel="held-out r",
                   ylabel="share of features at or below")
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
