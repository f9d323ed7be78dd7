"""The SAE's losses, each a named function of a stack of SAEs (``SAEStack``) and its batch (S, B, D): one value per
SAE, (S,). Reconstruction, L1 sparsity, and TopK's auxiliary AuxK."""

import torch

from helpers.sae.model import Entries


def mse_loss(stack, x, recon):
    """Squared reconstruction error per vector, in the normalized units (total variance 1)."""
    return ((recon - x) / stack.scale[:, None, None]).pow(2).sum(-1).mean(-1)


def l1_penalty(f):
    return f.sum(-1).mean(-1)  # f >= 0, so this is its L1 norm


def auxk_loss(stack, x, recon, pre, dead, k_aux):
    """Gao et al.'s AuxK: the top ``k_aux`` dead latents (``dead``: (S, F)) reconstruct the residual error (a
    gradient for latents that the TopK selection never picks). Unlike Gao et al., the dead latents' pre-activations
    enter without the ReLU: a latent whose pre-activation is negative on every input would otherwise get no gradient
    at all. On the cpu CNN's low-rank last hidden layer 37% of the latents stayed dead with the ReLU, 4% without it.
    ``pre``: the pre-activations without a graph; the chosen latents' values get theirs through
    ``SAEStack.pre_activations_at``, so the cost follows the chosen entries, not the dictionary."""
    s, b, f = pre.shape
    residual = ((x - recon) / stack.scale[:, None, None]).detach()
    counts, columns = [], []
    for i, (pre_i, dead_i) in enumerate(zip(pre, dead)):  # each SAE has its own number of dead latents
        candidates = torch.nonzero(dead_i).flatten()
        counts.append(min(k_aux, len(candidates)))
        if counts[-1] == len(candidates):  # every dead latent is chosen: no selection to make
            columns.append((candidates + i * f).repeat(b))
        elif counts[-1]:
            top = pre_i[:, candidates].topk(counts[-1], dim=1).indices
            columns.append((candidates[top].sort(1).values + i * f).flatten())
    if not columns:
        return pre.new_zeros(s)
    chosen = Entries.of_counts(torch.tensor(counts, device=pre.device).repeat_interleave(b), torch.cat(columns), s * f)
    aux = stack.decoder_sum(stack.pre_activations_at(x, pre, chosen), chosen)
    has_dead = torch.tensor(counts, device=pre.device) > 0
    return (aux - residual).pow(2).sum(-1).mean(-1) * has_dead
