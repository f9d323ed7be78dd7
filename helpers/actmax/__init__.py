"""Activation maximization (AM): gradient ascent on the input, in the style of Lucid/Lucent.

Four small, composable parts, each in its own module:
  param        ``PixelImage``, ``FourierImage``: nn.Modules whose forward() returns N images in [0, 1];
  transforms   random jitter, scale and rotation applied every step (sized for 32x32 inputs);
  objectives   what to maximize, one value per image, so one batch optimizes many units at once;
  render_loop  the loop: Adam on the image parameters, regularizers, a progress bar, a history.
This package's namespace holds them all (``actmax.render``, ``actmax.unit``, ...). What the study measures on the
images is in ``helpers.repetition``; its objectives and runs in ``helpers.am_study``.
"""
from helpers.actmax.objectives import (
                                       Objective,
                                       Stacked,
                                       channel,
                                       class_logit,
                                       direction,
                                       is_conv,
                                       layer_objective,
                                       layer_width,
                                       preactivation,
                                       shift_grid,
                                       shift_pooled,
                                       unit,
)
from helpers.actmax.param import FourierImage, PixelImage, cifar_color_matrix, color_correlation_sqrt, make_image
from helpers.actmax.render_loop import AMResult, blur_penalty, penalties, render, total_variation
from helpers.actmax.transforms import circular_shift, grid_shift, jitter, scale_rotate, standard_transforms

__all__ = ["Objective", "Stacked", "channel", "class_logit", "direction", "is_conv", "layer_objective", "layer_width",
           "preactivation", "shift_grid", "shift_pooled", "unit", "FourierImage", "PixelImage", "cifar_color_matrix",
           "color_correlation_sqrt", "make_image", "AMResult", "blur_penalty", "penalties", "render",
           "total_variation", "circular_shift", "grid_shift", "jitter", "scale_rotate", "standard_transforms"]
