"""A profile's whole study in one process, without papermill, Jupyter or IPython: for a borrowed GPU.

    python -m helpers.headless --profile paper --cifar /path/to/cifar10 [--data /path/to/Data]

It runs the study's steps (``helpers.manifest``: training every model, AM, harvesting, the SAEs, both comparisons,
the competence-matched pair, the curve along training and scale, the atlas and the answers) by executing each
notebook's code cells in order, with the step's parameters, exactly as papermill would; so it writes the same
results files (``Data/results/<profile>/``), the same caches (checkpoints, SAEs, AM runs) and, under
``book/<profile>/``, the executed pages with their outputs, shaped for the book. Copy ``Data/`` and ``book/`` back
and ``python -m helpers.study --profile paper`` there finds every step done or cached; ``jupyter-book build book``
renders the part.

``--cifar``: a CIFAR-10 JPEG archive or tree (``$CIFAR10_JPG``), or torchvision's ``cifar-10-batches-py`` folder
(or the folder holding it). Only torch, torchvision, numpy, scipy, pandas and matplotlib are needed: without IPython
the pages' display objects are ``helpers.display``'s stand-ins, without tqdm the loops run without progress bars.
Each step's time is printed and written to ``Data/results/<profile>/headless_times.json``. A page this machine ran
before with the same parameters, since the notebook or the code last changed, is skipped (the study runner's stamps,
which this run writes too).
"""
import argparse
import ast
import base64
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

from helpers.paths import ROOT, atomic_path, data_dir, write_json

NOTEBOOKS = ROOT / "notebooks"


# ----------------------------------------------------------------------------- running one notebook

def _outputs(value, kind="execute_result"):
    """A displayed value as notebook outputs: a picture, Markdown, HTML or text, as Jupyter shows it."""
    if value is None:
        return []
    data, metadata = {"text/plain": repr(value)}, {}
    for method, mime in (("_repr_png_", "image/png"), ("_repr_markdown_", "text/markdown"),
                         ("_repr_html_", "text/html")):
        shown = getattr(value, method, None)
        if callable(shown) and (content := shown()) is not None:
            if isinstance(content, tuple):  # IPython's (data, metadata), e.g. an Image with a width
                content, metadata = content[0], {mime: content[1]}
            if mime == "image/png" and isinstance(content, bytes):  # not yet base64 (IPython's Image already is)
                content = base64.b64encode(content).decode()
            data[mime] = content
            break
    output = dict(output_type=kind, data=data, metadata=metadata)
    return [dict(output, execution_count=None) if kind == "execute_result" else output]


def _figures():
    """Every open matplotlib figure as a PNG output, then closed (the inline backend's behaviour)."""
    import matplotlib.pyplot as plt
    out = []
    for number in plt.get_fignums():
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png", bbox_inches="tight")
        out.append(dict(output_type="display_data", metadata={},
                        data={"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": "<Figure>"}))
    plt.close("all")
    return out


def run_cell(source, namespace):
    """Execute one code cell in ``namespace``; its outputs: printed text, figures, and the last expression's value
    (not shown when the cell ends with ';', as in Jupyter)."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    from helpers import display
    printed = io.StringIO()
    display.SHOWN.clear()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, "<cell>", "exec"), namespace)
        value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace) if last else None
    if source.rstrip().endswith(";"):
        value = None
    import matplotlib.figure
    if isinstance(value, matplotlib.figure.Figure):
        value = None  # shown with the cell's other figures
    text = printed.getvalue()
    stream = [dict(output_type="stream", name="stdout", text=text)] if text else []
    shown = [o for v in display.SHOWN for o in _outputs(v, "display_data")]
    return stream + shown + _figures() + _outputs(value)


def run_notebook(source, target, parameters):
    """``source`` executed with ``parameters`` into ``target`` (written whole or not at all): the parameters cell
    replaced by the step's values, every other code cell run in one namespace, from the notebooks' folder."""
    nb = json.loads(Path(source).read_text())
    namespace = {"__name__": "__main__"}
    here = os.getcwd()
    os.chdir(NOTEBOOKS)
    try:
        for number, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            code = "".join(cell["source"])
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                exec(compile(code, "<parameters>", "exec"), namespace)  # the defaults, then the step's values
                namespace.update(parameters)
                cell["outputs"] = []
                continue
            try:
                cell["outputs"] = run_cell(code, namespace)
            except Exception as e:
                raise RuntimeError(f"{Path(source).name} {parameters}: cell {number} failed: "
                                   f"{type(e).__name__}: {e}") from e
    finally:
        os.chdir(here)
    nb.setdefault("metadata", {})["language_info"] = {"name": "python", "version": sys.version.split()[0]}
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- the study

def use_cifar(path):
    """Point the data loader at ``path``: a JPEG archive or tree, or torchvision's folder (linked into ``Data/``)."""
    from helpers.data import ARCHIVE_ENV
    path = Path(path).resolve()
    batches = path if path.name == "cifar-10-batches-py" else path / "cifar-10-batches-py"
    if batches.is_dir():
        link = data_dir() / "cifar-10-batches-py"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(batches, target_is_directory=True)
    elif path.exists():
        os.environ[ARCHIVE_ENV] = str(path)
    else:
        raise FileNotFoundError(f"--cifar {path} does not exist: give a CIFAR-10 JPEG archive or tree, or "
                                "torchvision's cifar-10-batches-py folder.")


def run(profile, seed=0, book=ROOT / "book"):
    """Every step of ``profile``'s study, in order, its pages written under ``book``, each stamped as the study runner
    stamps it (``manifest.write_stamp``), so that either runner skips what the other ran; returns {page: seconds} of
    the pages it ran."""
    import matplotlib
    matplotlib.use("Agg")
    import torch

    from helpers import freeze, manifest
    from helpers.book import prepare_for_book
    freeze.guard(profile)  # confirmatory seeds run only under the frozen rules
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (the SAEs, AM) on the tensor cores
        torch.backends.cudnn.allow_tf32 = True
    times, skipped = {}, []
    start = time.time()
    for step in manifest.steps(profile, seed):
        parameters = step.run_parameters(profile)
        source, target = NOTEBOOKS / step.notebook, step.target(Path(book), profile)
        if manifest.up_to_date(source, target, parameters):
            print(f"[skip] {step.page} {parameters}: up to date", flush=True)
            skipped.append(step.page)
            continue
        print(f"[run ] {step.page} {parameters}", flush=True)
        t = time.time()
        run_notebook(source, target, parameters)
        prepare_for_book(target, step.download_paths(profile), target.parent / "results")
        times[step.page] = round(time.time() - t, 1)
        manifest.write_stamp(target, parameters, times[step.page])
        print(f"[done] {step.page} in {times[step.page]:.0f} s", flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    record = data_dir() / "results" / profile / "headless_times.json"
    if times or not record.exists():  # a run that skipped every page keeps the record of the run that made them
        write_json(record, dict(profile=profile, device=device, torch=torch.__version__, seconds=times,
                                skipped=skipped, total_seconds=round(time.time() - start, 1)))
    print(f"study ({profile} profile) on {device}: {(time.time() - start) / 60:.1f} minutes", flush=True)
    return times


def main(argv=None):
    from helpers import profiles
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="paper", choices=profiles.STUDY_PROFILES)
    parser.add_argument("--cifar", help="CIFAR-10: a JPEG archive or tree, or torchvision's folder")
    parser.add_argument("--data", help="the data folder (default: Data/ or $INTERPRET_MLP_DATA)")
    parser.add_argument("--book", default=str(ROOT / "book"), help="where the executed pages go (default: book/)")
    parser.add_argument("--seed", type=int, default=0, help="the pages' own random picks; the training, SAE and AM "
                        "seeds are the profile's lists")
    args = parser.parse_args(argv)
    if args.data:
        os.environ["INTERPRET_MLP_DATA"] = str(Path(args.data).resolve())
    if args.cifar:
        use_cifar(args.cifar)
    run(args.profile, args.seed, Path(args.book).resolve())


if __name__ == "__main__":
    main()
