"""An SAE in the files SAE tools read: SAELens's layout (v6), ``sae_weights.safetensors`` beside a ``cfg.json``.

SAELens computes f = act(x - b_dec) @ W_enc + b_enc) and x^ = f @ W_dec + b_dec in the layer's own units, with
W_enc (d_in, d_sae) and W_dec (d_sae, d_in). This project's SAE divides its input by ``scale`` first and multiplies
its output back (``model``). The scale is folded into the weights, so the files encode and decode raw activations
exactly as the SAE does, with ``normalize_activations: "none"``:

    W_enc' = W_enc^T / scale     b_enc' = b_enc     W_dec' = scale * W_dec^T     b_dec' = scale * b_dec

Its decoder rows then have norm ``scale``, not 1; ``cfg.json``'s ``metadata.interpret_mlp`` keeps the scale, the
training settings and where the activations came from, and ``read_saelens`` undoes the folding with safetensors
alone (no SAELens needed)."""
import json
import os
import shutil
from pathlib import Path

import torch

from helpers.sae.model import SparseAutoencoder

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
SAELENS_LAYOUT = "6.0.0"  # the SAELens version whose layout the files follow (no SAELens code runs here)


def saelens_tensors(sae):
    s = sae.scale.item()
    return {"W_enc": (sae.W_enc.detach().T / s).contiguous(), "b_enc": sae.b_enc.detach().clone(),
            "W_dec": (sae.W_dec.detach().T * s).contiguous(), "b_dec": sae.b_dec.detach() * s}


def saelens_config(sae, hook, model_name, about):
    """SAELens's cfg.json for ``sae``: read at ``hook`` (a module name) of ``model_name``; ``about``: this
    project's record of it (seeds, training settings, data), kept under ``metadata.interpret_mlp``."""
    d_in = sae.W_dec.shape[0]
    config = dict(architecture="standard" if sae.k is None else "topk", d_in=d_in, d_sae=sae.n_features,
                  dtype="float32", device="cpu", apply_b_dec_to_input=True, normalize_activations="none",
                  reshape_activations="none",
                  metadata=dict(sae_lens_version=SAELENS_LAYOUT, sae_lens_training_version=SAELENS_LAYOUT,
                                model_name=model_name, hook_name=hook, hook_head_index=None, prepend_bos=False,
                                context_size=1, dataset_path="CIFAR-10",
                                interpret_mlp=dict(about, scale=sae.scale.item(), expansion=sae.n_features // d_in)))
    if sae.k is not None:
        config.update(k=sae.k, rescale_acts_by_decoder_norm=False)
    return config


def write_saelens(sae, folder, hook, model_name, about):
    """Write ``sae`` to ``folder`` (replaced whole: written next to it, then renamed) in SAELens's layout."""
    from safetensors.torch import save_file
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.cpu() for k, v in saelens_tensors(sae).items()}, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(saelens_config(sae, hook, model_name, about), indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_saelens(folder):
    """The ``SparseAutoencoder`` written by ``write_saelens`` (safetensors and json only)."""
    from safetensors.torch import load_file
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    ours = config.get("metadata", {}).get("interpret_mlp")
    if ours is None or config.get("normalize_activations") != "none":
        raise ValueError(f"{folder} holds no SAE written by this project (no metadata.interpret_mlp); load it with "
                         f"SAELens instead: sae_lens.SAE.load_from_disk({str(folder)!r}).")
    w, s = load_file(str(folder / WEIGHTS)), ours["scale"]
    sae = SparseAutoencoder(config["d_in"], ours["expansion"], scale=s, k=config.get("k"))
    with torch.no_grad():
        sae.W_enc.copy_(w["W_enc"].T * s)
        sae.W_dec.copy_(w["W_dec"].T / s)
        sae.b_enc.copy_(w["b_enc"])
        sae.b_dec.copy_(w["b_dec"] / s)
    return sae.eval()
