"""The SAE's losses, each a named function of a stack of SAEs (``SAEStack``) and its batch (S, B, D): one value per
SAE, (S,). Reconstruction, L1 sparsity, and TopK's auxiliary AuxK."""

import torch


def mse_loss(stack, x, recon):
    """Squared reconstruction error per vector, in the normalized units (total variance 1)."""
    return ((recon - x) / stack.scale[:, None, None]).pow(2).sum(-1).mean(-1)


def l1_penalty(f):
    return f.sum(-1).mean(-1)  # f >= 0, so this is its L1 norm


def auxk_loss(stack, x, recon, pre, dead, k_aux):
    """Gao et al.'s AuxK: the top ``k_aux`` dead latents (``dead``: (S, F)) reconstruct the residual error (a
    gradient for latents that the TopK selection never picks). Unlike Gao et al., the dead latents' pre-activations
    enter without the ReLU: a latent whose pre-activation is negative on every input would otherwise get no gradient
    at all. On the cpu CNN's low-rank last hidden layer 37% of the latents stayed dead with the ReLU, 4% without it."""
    residual = ((x - recon) / stack.scale[:, None, None]).detach()
    losses = []
    # each SAE's own dead columns, so the cost follows their number, not the dictionary's (unbind, not indexing: one
    # backward for all slices instead of a full-size zero gradient per slice)
    for pre_i, w_dec, residual_i, dead_i in zip(pre.unbind(0), stack.W_dec.unbind(0), residual, dead):
        columns = torch.nonzero(dead_i).flatten()
        if len(columns) == 0:
            losses.append(pre.new_zeros(()))
            continue
        top = pre_i[:, columns].topk(min(k_aux, len(columns)), dim=1)
        f_aux = torch.zeros(len(pre_i), len(columns), dtype=pre.dtype, device=pre.device)
        aux = f_aux.scatter(1, top.indices, top.values) @ w_dec[columns]
        losses.append((aux - residual_i).pow(2).sum(1).mean())
    return torch.stack(losses)
