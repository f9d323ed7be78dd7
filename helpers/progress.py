"""Progress bars: tqdm's where it is installed. The stock PyTorch GPU image that the paper run targets
(``helpers.headless``) may lack tqdm; there the loops run without a bar."""
try:
    from tqdm.auto import tqdm, trange
except ImportError:
    def tqdm(iterable=None, **kwargs):
        return iterable

    def trange(*args, **kwargs):
        return range(*args)

__all__ = ["tqdm", "trange"]
