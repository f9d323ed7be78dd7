"""What the pages display: IPython's Markdown, HTML, Image and display where IPython is installed (JupyterLab,
papermill); elsewhere (the one-process run of ``helpers.headless`` on a stock PyTorch image) stand-ins with the same
``_repr_*_`` methods, whose ``display`` collects what it is given in ``SHOWN`` for the running cell."""
from pathlib import Path

SHOWN = []

try:
    from IPython.display import HTML, Image, Markdown, display
except ImportError:
    class _Shown:
        def __init__(self, data=None, filename=None, width=None, **_):
            self.data, self.filename, self.width = data, filename, width

    class Markdown(_Shown):
        def _repr_markdown_(self):
            return self.data

    class HTML(_Shown):
        def _repr_html_(self):
            return self.data

    class Image(_Shown):
        def _repr_png_(self):
            return Path(self.filename).read_bytes() if self.filename else self.data

    def display(*values, **_):
        SHOWN.extend(values)

__all__ = ["HTML", "Image", "Markdown", "display", "SHOWN"]
