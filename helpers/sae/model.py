"""The sparse autoencoder as a module, and the definitions of a dead, a dense and a silent feature."""

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

    @torch.no_grad()
    def normalize_decoder(self):
        self.W_dec /= column_dots(self.W_dec, self.W_dec).sqrt().clamp_min(1e-8)

    @torch.no_grad()
    def remove_parallel_gradient(self):
        """Project out the gradient component along each decoder column (it would only change its norm)."""
        if self.W_dec.grad is not None:
            self.W_dec.grad.addcmul_(self.W_dec, column_dots(self.W_dec.grad, self.W_dec), value=-1)

    def to_state(self):
        """Tensors and plain numbers only: saved with torch.save and read back with ``weights_only=True``, so a
        results folder from elsewhere cannot run code when it is loaded."""
        return dict(state_dict={k: v.detach().cpu() for k, v in self.state_dict().items()}, k=self.k,
                    d_in=self.W_dec.shape[0], expansion=self.n_features // self.W_dec.shape[0])

    @classmethod
    def from_state(cls, state):
        sae = cls(state["d_in"], state["expansion"], k=state["k"])
        sae.load_state_dict(state["state_dict"])
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




def column_dots(a, b, rows=256):
    """The dot products of the columns of ``a`` with those of ``b`` (both (D, F)): (F,). Summed over blocks of
    ``rows`` rows, which stay in cache: at the full-size decoder (4096 x 12,288) on a CPU a quarter of the time of
    ``(a * b).sum(0)``, which reduces along the strided dimension."""
    out = torch.zeros(a.shape[1], dtype=a.dtype, device=a.device)
    for i in range(0, a.shape[0], rows):
        out += (a[i:i + rows] * b[i:i + rows]).sum(0)
    return out
