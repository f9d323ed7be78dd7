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


def dedupe_scripts(app, pagename, templatename, context, doctree):
    """Drop repeated script tags: the theme stack adds sphinx-thebe's inline `const THEBE_JS_URL` twice, which
    is a JavaScript error on every page."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", str(js)) or "",  # an inline script's filename is None or ''
               tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"][:] = unique


# The widget bundle finds its fonts relative to the URL requirejs gives its own module id, by default a path
# next to the page (where they are not): map that id to the vendored copy, before require.js reads its config.
ASSETS_PATH_JS = ("var require = (function () { var v = new URL((document.documentElement.dataset.content_root"
                  " || '') + '_static/vendor/html-manager', document.baseURI).href;"
                  " return {paths: {'@jupyter-widgets': v, '@jupyter-widgets/html-manager/dist': v}}; })();")


def setup(app):
    install_packages()
    app.warningiserror = True  # e.g. a page listed in _toc.yml that does not exist
    app.add_js_file(None, body=ASSETS_PATH_JS, priority=100)
    app.connect("html-page-context", dedupe_scripts, priority=900)  # after the extensions that add scripts
    app.connect("build-finished", copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
