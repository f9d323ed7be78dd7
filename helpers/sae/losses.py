"""The SAE's losses, each a named function: reconstruction, L1 sparsity, and TopK's auxiliary AuxK."""

import torch


def mse_loss(sae, x, recon):
    """Squared reconstruction error per vector, in the normalized units (total variance 1)."""
    return ((recon - x) / sae.scale).pow(2).sum(1).mean()


def l1_penalty(f):
    return f.sum(1).mean()  # f >= 0, so this is its L1 norm


def auxk_loss(sae, x, recon, pre, dead, k_aux):
    """Gao et al.'s AuxK: the top ``k_aux`` dead latents reconstruct the residual error (a gradient for latents
    that the TopK selection never picks). Unlike Gao et al., the dead latents' pre-activations enter without the
    ReLU: a latent whose pre-activation is negative on every input would otherwise get no gradient at all. On the
    cpu CNN's low-rank last hidden layer 37% of the latents stayed dead with the ReLU, 4% without it."""
    if not dead.any():
        return pre.new_zeros(())
    residual = ((x - recon) / sae.scale).detach()
    idx = torch.nonzero(dead).flatten()  # only the dead columns: the cost follows their number, not the dictionary's
    pre_dead = pre[:, idx]
    top = pre_dead.topk(min(k_aux, len(idx)), dim=1)
    f_aux = torch.zeros_like(pre_dead).scatter(1, top.indices, top.values)
    return (f_aux @ sae.W_dec[:, idx].T - residual).pow(2).sum(1).mean()
