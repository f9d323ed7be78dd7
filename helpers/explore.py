"""ipywidgets explorers for JupyterLab. Each draws once with its defaults when built, so a headless
(papermill) run executes the same code path as a reader's first view."""
import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from helpers import actmax
from helpers.repetition import motif_score

LABELS = {"description_width": "initial"}  # labels in full, not cut to the default width


def _slider(kind, value, lo, hi, label, **kw):
    return kind(value=value, min=lo, max=hi, description=label, continuous_update=False, style=LABELS, **kw)


def _explorer(draw, busy, **controls):
    """``widgets.interactive`` over ``draw``, shown, with a status line just above the drawing that says what runs
    while it runs (``busy(**values)``): the previous drawing stays up until the new one is ready, so without it a
    long redraw looks like nothing happened."""
    status = widgets.Label()

    def wrapped(**kwargs):
        status.value = busy(**kwargs)
        try:
            draw(**kwargs)
        finally:
            status.value = ""
    ui = widgets.interactive(wrapped, **controls)
    ui.children = (*ui.children[:-1], status, ui.children[-1])
    display(ui)
    return ui


def am_explorer(models, layers, steps=128, lr=0.05, color_matrix=None):
    """Sliders that re-run activation maximization for one neuron of ``layers[model]`` of a chosen model (optionally
    shift-pooled) and redraw it with its motif score."""
    units = min(actmax.layer_width(m, layers[name]) for name, m in models.items())

    def draw(model, unit, pooled, steps, lr, l2, tv, blur, parameterization):
        net = models[model]
        objective = actmax.unit(layers[model], [unit])
        objective = actmax.shift_pooled(objective) if pooled else objective
        r = actmax.render(net, objective, parameterization, steps=steps, lr=lr, l2=l2, tv=tv, blur=blur,
                          color_matrix=color_matrix, progress=False)
        fig, (ax_img, ax_curve) = plt.subplots(1, 2, figsize=(7, 3))
        ax_img.imshow(r.images[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax_img.set_title(f"{model}: {objective.name} {unit}\nmotif {motif_score(r.images)[0]:.2f}", fontsize=9)
        ax_img.axis("off")
        ax_curve.plot(r.history[:, 0].numpy())
        ax_curve.set(xlabel="step", ylabel="objective")
        fig.tight_layout()
        plt.show()

    return _explorer(
        draw, lambda model, unit, steps, **_: f"optimizing {model} unit {unit}: {steps} steps…",
        model=widgets.Dropdown(options=list(models), description="model", style=LABELS),
        unit=_slider(widgets.IntSlider, 0, 0, units - 1, "unit"),
        pooled=widgets.Checkbox(value=True, description="shift-pooled", style=LABELS),
        steps=_slider(widgets.IntSlider, steps, 16, 1024, "steps", step=16),
        lr=_slider(widgets.FloatLogSlider, lr, -3, 0, "lr", base=10),
        l2=_slider(widgets.FloatSlider, 0.0, 0, 0.05, "L2", step=0.001, readout_format=".3f"),
        tv=_slider(widgets.FloatSlider, 0.0, 0, 2, "TV", step=0.05),
        blur=_slider(widgets.FloatSlider, 0.0, 0, 2, "blur", step=0.05),
        parameterization=widgets.ToggleButtons(options=["fft", "pixel"], description="image", style=LABELS))


def feature_browser(feature_acts, frequency, images, labels, classes, title=""):
    """A slider over feature index showing top images, the class histogram and the firing frequency."""
    from helpers.plots import plot_feature

    def draw(feature):
        plot_feature(feature_acts[:, feature], images, labels, classes, feature, frequency=frequency[feature].item(),
                     title=title)
        plt.show()

    return _explorer(
        draw,
        lambda feature: f"drawing feature {feature}…",
        feature=_slider(widgets.IntSlider, int(frequency.argmax()), 0, feature_acts.shape[1] - 1, "feature"),
    )
