"""interpret-mlp: the study's code (see README.md)."""
import warnings

# torch.sparse's CSR matrices (the SAE's sparse training step, the partner search of the comparisons) warn on every
# construction that they are in beta
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
