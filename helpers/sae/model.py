"""The sparse autoencoder as a module, a stack of them trained as one, and the definitions of a dead, a dense and a
silent feature."""

import torch
import torch.nn.functional as F
from torch import nn

DENSE_FREQUENCY = 0.1   # a feature firing on more than this share of held-out vectors is dense


def dead(frequency):
    """Which features are dead: they fire on none of the held-out vectors (``frequency``: each one's firing rate)."""
    return torch.as_tensor(frequency) == 0


def dense(frequency):
    """Which features are dense: they fire on more than ``DENSE_FREQUENCY`` of the held-out vectors."""
    return torch.as_tensor(frequency) > DENSE_FREQUENCY


def silent(last_fired, step, window):
    """During training, which features have not fired for ``window`` steps (``last_fired``: each one's last step)."""
    return step - last_fired >= window


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in, expansion=3, scale=1.0, b_dec=None, seed=0, k=None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = d_in * expansion
        w_dec = torch.randn(d_in, d, generator=g)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=0, keepdim=True))
        self.W_enc = nn.Parameter(self.W_dec.detach().T.clone())  # untied, initialized as the transpose
        self.b_enc = nn.Parameter(torch.zeros(d))
        self.b_dec = nn.Parameter(torch.zeros(d_in) if b_dec is None else b_dec.clone().float())
        self.register_buffer("scale", torch.tensor(float(scale)))  # inputs are divided by it (see the module doc)
        self.k = k  # None: ReLU code (l1 arm); an int: only the k largest features are kept (topk arm)

    @property
    def n_features(self):
        return self.W_enc.shape[0]

    def pre_activations(self, x):
        return (x / self.scale - self.b_dec) @ self.W_enc.T + self.b_enc

    def encode(self, x):
        return self.activate(self.pre_activations(x))

    def activate(self, pre):
        """The code from pre-activations: ReLU, then (topk arm) only the k largest kept."""
        f = F.relu(pre)
        if self.k is None:
            return f
        top = f.topk(self.k, dim=1)
        return torch.zeros_like(f).scatter_(1, top.indices, top.values)

    def decode(self, f):
        return (f @ self.W_dec.T + self.b_dec) * self.scale

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    def to_state(self):
        """Tensors and plain numbers only: saved with torch.save and read back with ``weights_only=True``, so a
        results folder from elsewhere cannot run code when it is loaded."""
        return dict(state_dict={k: v.detach().cpu() for k, v in self.state_dict().items()}, k=self.k,
                    d_in=self.W_dec.shape[0], expansion=self.n_features // self.W_dec.shape[0])

    @classmethod
    def from_state(cls, state):
        """The SAE of ``to_state``'s dict, holding that dict's tensors (no copy): a state made in memory from an SAE
        on the CPU shares that SAE's storage, so train neither afterwards; a state read from a file is its own."""
        with torch.device("meta"):  # no weights drawn only to be replaced
            sae = cls(state["d_in"], state["expansion"], k=state["k"])
        sae.load_state_dict(state["state_dict"], assign=True)  # the state's tensors, not a second copy of them
        return sae.eval()


def geometric_median(x, iterations=50):
    """Weiszfeld's algorithm; starts at the mean."""
    y = x.mean(0)
    for _ in range(iterations):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() < 1e-6 * y.norm().clamp_min(1e-8):
            return y_new
        y = y_new
    return y


class _PreActivationsAt(torch.autograd.Function):
    """A stack's pre-activations at ``indices`` (S, B, k), read from ``pre`` (computed without a graph), with the
    gradient of ``u`` = x / scale - b_dec (S, B, D) and of the encoder's weights and bias at those entries only: at
    the cost of the S·B·k entries rather than of all F features. EmbeddingBag does the sparse products: its forward
    gives u's gradient, and its weight gradient, with u as the output's gradient, is the encoder's."""

    @staticmethod
    def forward(ctx, u, w_enc, b_enc, pre, indices):
        ctx.save_for_backward(u, w_enc, indices)
        return pre.gather(-1, indices)

    @staticmethod
    def backward(ctx, grad):
        u, w_enc, indices = ctx.saved_tensors
        s, b, k = indices.shape
        n_features, d = w_enc.shape[1:]
        flat = (indices + torch.arange(s, device=indices.device)[:, None, None] * n_features).reshape(s * b, k)
        weights = grad.reshape(s * b, k)
        d_u = F.embedding_bag(flat, w_enc.reshape(s * n_features, d), per_sample_weights=weights, mode="sum")
        with torch.enable_grad():
            table = w_enc.detach().reshape(s * n_features, d).requires_grad_()
            d_w, = torch.autograd.grad(F.embedding_bag(flat, table, per_sample_weights=weights, mode="sum"), table,
                                       u.reshape(s * b, d))
        d_b = grad.new_zeros(s * n_features).index_add_(0, flat.flatten(), weights.flatten())
        return d_u.reshape(s, b, d), d_w.reshape(s, n_features, d), d_b.reshape(s, n_features), None, None


class SAEStack(nn.Module):
    """SAEs of one arm and one size trained as one module: every parameter has a leading axis with one slice per SAE,
    and a batch holds one (B, D) block per SAE, (S, B, D), so one batched matrix product serves them all. Each
    slice's arithmetic is the one its SAE would do alone (``tests/test_sae.py`` trains both ways). The decoder is
    held as rows (S, F, D): its unit norms and a TopK code's sparse decoding then read contiguous memory."""

    def __init__(self, saes):
        super().__init__()
        kinds = {(sae.k, *sae.W_enc.shape) for sae in saes}
        if len(kinds) != 1:
            raise ValueError(f"a stack holds SAEs of one arm and size; got (k, features, inputs) = "
                             f"{sorted(kinds, key=str)}")
        self.k = saes[0].k
        self.W_enc = nn.Parameter(torch.stack([sae.W_enc.detach() for sae in saes]))
        self.W_dec = nn.Parameter(torch.stack([sae.W_dec.detach().T for sae in saes]).contiguous())
        self.b_enc = nn.Parameter(torch.stack([sae.b_enc.detach() for sae in saes]))
        self.b_dec = nn.Parameter(torch.stack([sae.b_dec.detach() for sae in saes]))
        self.register_buffer("scale", torch.stack([sae.scale for sae in saes]))

    def __len__(self):
        return self.W_enc.shape[0]

    @property
    def n_features(self):
        return self.W_enc.shape[1]

    def _scale(self):
        return self.scale[:, None, None]

    def pre_activations(self, x):
        # (x / scale - b_dec) W_enc^T + b_enc, with b_dec moved into the bias: backward then needs no gradient for
        # the (S, B, D) input of the large product (only b_dec's, through one row per SAE), one product of the five
        # or three in a training step
        bias = self.b_enc - torch.bmm(self.b_dec.unsqueeze(1), self.W_enc.transpose(1, 2)).squeeze(1)
        return torch.baddbmm(bias.unsqueeze(1), x / self._scale(), self.W_enc.transpose(1, 2))

    def pre_activations_at(self, x, pre, indices):
        """``pre_activations(x)`` at ``indices`` (S, B, k), taken from ``pre`` (its values without a graph), whose
        backward costs the k entries per vector, not the F features (``_PreActivationsAt``)."""
        return _PreActivationsAt.apply(x / self._scale() - self.b_dec.unsqueeze(1), self.W_enc, self.b_enc, pre,
                                       indices)

    def decode(self, f):
        return torch.baddbmm(self.b_dec.unsqueeze(1), f, self.W_dec) * self._scale()

    def decode_sparse(self, values, indices):
        """``decode`` of a code given by its nonzeros: ``values`` at feature ``indices``, both (S, B, k)."""
        return (self.decoder_sum(values, indices) + self.b_dec.unsqueeze(1)) * self._scale()

    def decoder_sum(self, values, indices):
        """Sum over j of values[s, b, j] times decoder row indices[s, b, j] of SAE s: (S, B, D) at the cost of the
        k nonzeros rather than of all F features (Gao et al.'s sparse decoding)."""
        s, b, k = indices.shape
        offset = torch.arange(s, device=indices.device)[:, None, None] * self.n_features
        out = F.embedding_bag((indices + offset).reshape(s * b, k), self.W_dec.reshape(s * self.n_features, -1),
                              per_sample_weights=values.reshape(s * b, k), mode="sum")
        return out.reshape(s, b, -1)

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_gradient(self):
        """Project out the gradient component along each decoder row (it would only change its norm)."""
        if self.W_dec.grad is not None:
            self.W_dec.grad.sub_(self.W_dec * (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True))

    def sae(self, i):
        """SAE ``i`` of the stack, as a ``SparseAutoencoder`` (a copy)."""
        d_in = self.W_enc.shape[2]
        out = SparseAutoencoder(d_in, self.n_features // d_in, k=self.k).to(self.W_enc.device)
        with torch.no_grad():
            for name, value in (("W_enc", self.W_enc[i]), ("W_dec", self.W_dec[i].T), ("b_enc", self.b_enc[i]),
                                ("b_dec", self.b_dec[i]), ("scale", self.scale[i])):
                getattr(out, name).copy_(value)
        return out

    def unstack(self):
        return [self.sae(i) for i in range(len(self))]
