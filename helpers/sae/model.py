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


class Entries:
    """A few entries of a stack's code, as one (S·B, S·F) sparse matrix: rows the S·B vectors, feature f of SAE s in
    column s·F + f. Held by rows (``crow``, ``columns``: CSR, for the forward products) and by columns (for the
    backward ones); every product is a sum of rows at the entries' cost (``embedding_bag``), not a dense (B, F) one.
    torch's CSR-by-dense products cost on 2 CPU cores what the dense product does at a 2% dense code. A row's columns
    are distinct and in increasing order (as every constructor here makes them: ``dots`` relies on it)."""

    def __init__(self, crow, columns, n_vectors, n_columns):
        self.crow, self.columns, self.n_vectors, self.n_columns = crow, columns, n_vectors, n_columns
        self.rows = torch.repeat_interleave(torch.arange(n_vectors, device=crow.device), crow.diff(),
                                            output_size=len(columns))
        self.by_column = torch.argsort(columns, stable=True)
        counts = torch.bincount(columns, minlength=n_columns)
        self.column_starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])

    @classmethod
    def of_counts(cls, per_row, columns, n_columns):
        """The entries of ``per_row`` (S·B,) columns each, ``columns`` listed row after row."""
        return cls(torch.cat([per_row.new_zeros(1), per_row.cumsum(0)]), columns, len(per_row), n_columns)

    @classmethod
    def of_mask(cls, active):
        """The nonzero entries of an (S, B, F) mask."""
        s, b, f = active.shape
        sae, _, feature = torch.nonzero(active, as_tuple=True)
        return cls.of_counts(active.sum(-1).flatten(), sae * f + feature, s * f)

    @classmethod
    def of_indices(cls, indices, n_features):
        """The entries at (S, B, K) feature ``indices``, K per vector, each row's in increasing order."""
        s, b, k = indices.shape
        columns = indices.sort(-1).values + torch.arange(s, device=indices.device)[:, None, None] * n_features
        return cls(torch.arange(s * b + 1, device=indices.device) * k, columns.flatten(), s * b, s * n_features)

    def sum_rows(self, values, table):
        """out[r] = sum over row r's entries of value times ``table``[column]: (S·B, D)."""
        return F.embedding_bag(self.columns, table, self.crow[:-1], per_sample_weights=values, mode="sum")

    def sum_columns(self, values, table):
        """out[c] = sum over column c's entries of value times ``table``[row]: (S·F, D), the transposed product."""
        return F.embedding_bag(self.rows[self.by_column], table, self.column_starts,
                               per_sample_weights=values[self.by_column], mode="sum")

    def dots(self, left, right):
        """left[row] · right[column] at every entry."""
        pattern = torch.sparse_csr_tensor(self.crow, self.columns, left.new_zeros(len(self.columns)),
                                          (self.n_vectors, self.n_columns), check_invariants=False)
        return torch.sparse.sampled_addmm(pattern, left, right.T, beta=0.0).values()


class _PreActivationsAt(torch.autograd.Function):
    """A stack's pre-activations at ``entries``, their ``values`` computed by the dense encoder without a graph: the
    gradient reaches the encoder's weights and biases and the decoder's bias at the entries' cost (the dense step's
    backward product over all F features is a training step's largest)."""

    @staticmethod
    def forward(ctx, values, u, w_enc, b_enc, b_dec, entries):
        ctx.save_for_backward(u, w_enc)
        ctx.entries = entries
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        u, w_enc = ctx.saved_tensors
        s, f, d = w_enc.shape
        grad = grad.contiguous()
        d_w_enc = ctx.entries.sum_columns(grad, u.reshape(-1, d)).reshape(s, f, d)
        d_b_enc = grad.new_zeros(s * f).index_add_(0, ctx.entries.columns, grad).reshape(s, f)
        d_b_dec = -torch.bmm(d_b_enc.unsqueeze(1), w_enc).squeeze(1)  # b_dec enters the pre-activations as -b_dec
        return None, None, d_w_enc, d_b_enc, d_b_dec, None


class _DecodeAt(torch.autograd.Function):
    """Sum over each vector's ``entries`` of value times its feature's decoder row, (S·B, D) (Gao et al.'s sparse
    decoding), with both gradients at the entries' cost."""

    @staticmethod
    def forward(ctx, values, w_dec, entries):
        ctx.save_for_backward(values, w_dec)
        ctx.entries = entries
        return entries.sum_rows(values, w_dec.reshape(entries.n_columns, -1))

    @staticmethod
    def backward(ctx, grad):
        values, w_dec = ctx.saved_tensors
        grad, table = grad.contiguous(), w_dec.reshape(ctx.entries.n_columns, -1)
        return ctx.entries.dots(grad, table), ctx.entries.sum_columns(values, grad).reshape(w_dec.shape), None


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

    def decode(self, f):
        return torch.baddbmm(self.b_dec.unsqueeze(1), f, self.W_dec) * self._scale()

    def pre_activations_at(self, x, pre, entries):
        """``pre_activations(x)`` at ``entries`` (an ``Entries``), read from ``pre`` (their values, without a graph),
        with gradients at the entries' cost."""
        values = pre.reshape(entries.n_vectors, -1)[entries.rows, entries.columns % pre.shape[-1]]
        u = (x / self._scale() - self.b_dec.unsqueeze(1)).detach()
        return _PreActivationsAt.apply(values, u, self.W_enc, self.b_enc, self.b_dec, entries)

    def decoder_sum(self, values, entries):
        """Sum over each vector's ``entries`` of value times its feature's decoder row, (S, B, D)."""
        return _DecodeAt.apply(values, self.W_dec, entries).reshape(len(self), -1, self.W_dec.shape[-1])

    def decode_sparse(self, values, entries):
        """``decode`` of a code given by its nonzeros: ``values`` at ``entries``."""
        return (self.decoder_sum(values, entries) + self.b_dec.unsqueeze(1)) * self._scale()

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_gradient(self):
        """Project out the gradient component along each decoder row (it would only change its norm)."""
        if self.W_dec.grad is not None:  # two passes over the rows, no temporary of their size
            along = torch.linalg.vecdot(self.W_dec, self.W_dec.grad).unsqueeze(-1)
            self.W_dec.grad.addcmul_(self.W_dec, along, value=-1)

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
