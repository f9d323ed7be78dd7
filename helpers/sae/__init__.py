"""Dictionary learning on a hidden layer: sparse autoencoders in two arms, trained to the same sparsity.

    x_n = x / scale                          (scale makes E||x_n - mean||^2 = 1, the same units for every model)
    f   = ReLU(W_enc (x_n - b_dec) + b_enc)  (features, ``expansion`` times as many as inputs)
    x^  = (W_dec f + b_dec) * scale          (decoder columns kept at unit norm)

- ``l1`` arm (Bricken et al. 2023, the proposal's SAE): loss = ||x^_n - x_n||^2 + λ ||f||_1. λ is not hand-picked:
  during the first ``CALIBRATE_UNTIL`` of training a controller moves it until the batches' L0 sits at the target,
  then it is frozen.
- ``topk`` arm (Gao et al. 2024): exactly k = target L0 features are kept per input; silent latents learn from an
  auxiliary loss (AuxK) that reconstructs the residual error with the top silent latents.
In both arms silent features are resampled towards badly reconstructed inputs (Bricken et al.).

"Dead" and "dense" are defined once, here: a feature is **dead** when it fires on none of the held-out vectors
(``dead``), **dense** when it fires on more than ``DENSE_FREQUENCY`` of them (``dense``). During training a feature
is **silent** when it has not fired for a window of steps (``silent``): TopK's AuxK trains the latents silent for
``max(20, steps // 20)`` steps (the window the training log counts too), and resampling (at 20% and 40% of
training) renews the features silent for ``steps // 5`` steps, since the previous resampling.

SAEs that read activations of one shape train together as ``SAEStack``s (``train_saes``): one batched matrix product
per layer for all SAEs of a stack, each SAE with its own seed, batches, λ and resampling, and the result each would have
alone. Stacks are sized to a memory budget (``memory_budget``, ``stack_bytes``): half the free memory of a GPU; on a
CPU, where stacking buys little, at most ``CPU_STACK_BYTES``, so full-size SAEs train one at a time;
$INTERPRET_MLP_SAE_MEMORY_GIB sets it. Only the encoder's forward product touches every feature: the TopK arm's step,
and the L1 arm's once its code is sparse (``SPARSE_STEP_SHARE``), run the decoder and every backward product over the
code's nonzeros (``model.Entries``; ``dense_topk_loss`` is the TopK step's textbook form, its reference).

The modules: ``model`` (the module, the stack; "dead", "dense", "silent"), ``losses``, ``train`` (step, resample,
log, loop), ``evaluate`` (held-out metrics, splicing, a planted dictionary), ``export`` (SAELens's files). This
package's namespace holds them all.
"""
from helpers.sae.evaluate import (
                                  atom_recovery,
                                  feature_activations,
                                  reconstruction_metrics,
                                  spliced_accuracies,
                                  spliced_accuracy,
                                  synthetic_dictionary_data,
)
from helpers.sae.export import read_saelens, write_saelens
from helpers.sae.losses import auxk_loss, l1_penalty, mse_loss
from helpers.sae.model import (
                                  DENSE_FREQUENCY,
                                  Entries,
                                  SAEStack,
                                  SparseAutoencoder,
                                  dead,
                                  dense,
                                  geometric_median,
                                  silent,
)
from helpers.sae.train import (
                                  ARMS,
                                  AUXK_COEFFICIENT,
                                  CALIBRATE_UNTIL,
                                  CPU_STACK_BYTES,
                                  LEARNING_RATES,
                                  MEMORY_VARIABLE,
                                  REFERENCE_FEATURES,
                                  RESAMPLE_UNTIL,
                                  SPARSE_STEP_SHARE,
                                  dense_topk_loss,
                                  iter_saes,
                                  learning_rate,
                                  log_entry,
                                  memory_budget,
                                  new_optimizer,
                                  new_sae,
                                  plan_stacks,
                                  resample_dead,
                                  resample_step,
                                  stack_bytes,
                                  stack_bytes_of,
                                  train_sae,
                                  train_saes,
                                  train_stack,
                                  train_step,
)

__all__ = ["read_saelens", "write_saelens", "atom_recovery", "feature_activations", "reconstruction_metrics",
           "spliced_accuracies", "spliced_accuracy", "synthetic_dictionary_data", "auxk_loss", "l1_penalty",
           "mse_loss", "DENSE_FREQUENCY",
           "SAEStack",
           "SparseAutoencoder", "Entries", "dense_topk_loss", "dead", "dense", "geometric_median", "silent", "ARMS",
           "AUXK_COEFFICIENT",
           "CALIBRATE_UNTIL", "LEARNING_RATES", "REFERENCE_FEATURES", "RESAMPLE_UNTIL", "learning_rate", "log_entry",
           "new_optimizer", "new_sae", "resample_dead", "resample_step", "train_sae", "train_saes", "train_step",
           "CPU_STACK_BYTES", "MEMORY_VARIABLE", "SPARSE_STEP_SHARE", "memory_budget", "plan_stacks", "stack_bytes",
           "stack_bytes_of", "train_stack", "iter_saes"]
