"""The sparse autoencoder as a module, a stack of them trained as one, and the definitions of a dead, a dense and a
silent feature."""
import warnings

import torch
import torch.nn.functional as F
from torch import nn

DENSE_FREQUENCY = 0.1   # a feature firing on more than this share of held-out vectors is dense
# torch.sparse's CSR matrices (the L1 arm's sparse step) warn on every construction that they are in beta
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


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


class _PositiveCode(torch.autograd.Function):
    """The L1 arm's reconstruction (before the decoder's bias and scale) and L1 norm per SAE from the positive
    pre-activations alone, held as one sparse matrix (CSR; rows the S·B vectors, columns the S·F features of the
    stacked dictionaries): the decoder's product and the three backward products cost the active entries, not all F
    features. ``pre`` (S, B, F) comes from the dense encoder without a graph, ``u`` = x / scale - b_dec is its
    input; the gradients reach the encoder's weights and biases through the active pre-activations, and the
    decoder's weights."""

    @staticmethod
    def forward(ctx, pre, u, w_enc, b_enc, b_dec, w_dec):
        s, b, f = pre.shape
        active = pre > 0
        counts = active.sum(-1).flatten()
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        sae, _, feature = torch.nonzero(active, as_tuple=True)
        columns, values = sae * f + feature, pre[active]
        code = torch.sparse_csr_tensor(crow, columns, values, (s * b, s * f), check_invariants=False)
        recon = (code @ w_dec.reshape(s * f, -1)).reshape(s, b, -1)
        l1 = values.new_zeros(s).index_add_(0, sae, values) / b
        ctx.save_for_backward(crow, columns, values, sae, u, w_enc, w_dec)
        return recon, l1

    @staticmethod
    def backward(ctx, g_recon, g_l1):
        crow, columns, values, sae, u, w_enc, w_dec = ctx.saved_tensors
        s, f, d = w_enc.shape
        b = u.shape[1]
        g_recon = g_recon.reshape(s * b, d)
        code = torch.sparse_csr_tensor(crow, columns, values, (s * b, s * f), check_invariants=False)
        d_w_dec = code.to_sparse_csc().t() @ g_recon
        g_code = torch.sparse.sampled_addmm(code, g_recon, w_dec.reshape(s * f, d).T, beta=0.0).values()
        g_code = g_code + g_l1[sae] / b  # the ReLU passes the gradient of every active entry
        grad = torch.sparse_csr_tensor(crow, columns, g_code, (s * b, s * f), check_invariants=False)
        d_w_enc = grad.to_sparse_csc().t() @ u.reshape(s * b, d)
        d_b_enc = g_code.new_zeros(s * f).index_add_(0, columns, g_code).reshape(s, f)
        d_b_dec = -torch.bmm(d_b_enc.unsqueeze(1), w_enc).squeeze(1)  # b_dec enters the pre-activations as -b_dec
        return None, None, d_w_enc.reshape(s, f, d), d_b_enc, d_b_dec, d_w_dec.reshape(s, f, d)


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

    def positive_code(self, x, pre):
        """The L1 arm's ``decode(relu(pre))`` and L1 norm per SAE (S,), from ``pre = pre_activations(x)`` (its values
        without a graph), at the cost of the active entries (``_PositiveCode``)."""
        u = (x / self._scale() - self.b_dec.unsqueeze(1)).detach()
        recon, l1 = _PositiveCode.apply(pre, u, self.W_enc, self.b_enc, self.b_dec, self.W_dec)
        return (recon + self.b_dec.unsqueeze(1)) * self._scale(), l1

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
