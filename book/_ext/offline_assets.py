"""Sphinx extension: serve the widget and math JavaScript from the book itself, and fail on warnings.

The npm packages in book/package.json (installed with `npm ci` on first build) are copied into the built
site's _static/vendor/, which _config.yml points nb_ipywidgets_js and mathjax_path at. Any Sphinx warning
(a missing page in _toc.yml, a broken reference) stops the build.
"""
import shutil
import subprocess
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1]
ASSETS = {  # node_modules path -> _static/vendor path
    "requirejs/require.js": "require.js",
    "@jupyter-widgets/html-manager/dist": "html-manager",
    "mathjax/es5": "mathjax",
}


def install_packages():
    modules = BOOK / "node_modules"
    if not all((modules / src).exists() for src in ASSETS):
        try:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=BOOK, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise RuntimeError(f"the book needs Node.js/npm to install its offline JavaScript ({BOOK}/package.json): {e}")


def copy_assets(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    vendor = Path(app.outdir) / "_static" / "vendor"
    for src, dst in ASSETS.items():
        source, target = BOOK / "node_modules" / src, vendor / dst
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def setup(app):
    install_packages()
    app.warningiserror = True  # e.g. a page listed in _toc.yml that does not exist
    app.connect("build-finished", copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
