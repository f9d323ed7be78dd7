"""The whole study in one command: every notebook through papermill, then the book.

    python -m helpers.study --profile cpu

Executed notebooks are written to ``book/<profile>/``. A step is skipped when this machine ran it before (a stamp
in ``Data/results/<profile>/study/``, so a fresh clone with committed notebooks but no data runs everything) with
the same parameters, after the last change to the notebook and the ``helpers`` code; the first failing notebook
stops the run with its error.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger

from helpers import manifest, profiles
from helpers.book import (  # noqa: F401
    WIDGET_VIEW,
    build_book,
    download_links,
    machine_paths,
    prepare_for_book,
    write_intro,
    write_toc,
)
from helpers.data import ARCHIVE_ENV
from helpers.paths import ROOT, data_dir, write_json

NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"


# The explorers (ipywidgets) need a running kernel: the book cannot use them, so the study runs 01 and 02 with
# explorer=False (``manifest.steps``). They run when a user opens the notebook, and in the tests (headless in
# test_notebooks, in JupyterLab in test_notebooks_jupyterlab; the CI hang once met in a widget cell is what ``_sliced``
# guards against). Every other setting comes from the profile (``helpers.profiles``).


def steps(profile, seed=0):
    """(source notebook, executed notebook, parameters) in the order the study runs them (``manifest.steps``)."""
    return [(s.notebook, s.target(BOOK, profile), {"profile": profile, **s.parameters})
            for s in manifest.steps(profile, seed)]


def stamp_path(target, parameters):
    return data_dir() / "results" / parameters["profile"] / "study" / f"{target.stem}.json"


def read_stamp(target, parameters):
    """What the last run of this step left: dict(parameters, seconds), or None."""
    stamp = stamp_path(target, parameters)
    if not stamp.exists():
        return None
    saved = json.loads(stamp.read_text())
    return saved if "parameters" in saved else dict(parameters=saved, seconds=None)  # older stamps: parameters only


def write_stamp(target, parameters, seconds):
    write_json(stamp_path(target, parameters), dict(parameters=parameters, seconds=round(seconds)))


def up_to_date(source, target, parameters):
    stamp, saved = stamp_path(target, parameters), read_stamp(target, parameters)
    if not (target.exists() and saved):
        return False
    newest_code = max(p.stat().st_mtime for p in [source, *(ROOT / "helpers").glob("*.py")])
    return saved["parameters"] == parameters and stamp.stat().st_mtime > newest_code


def _sliced(get_msg, seconds=1.0):
    """``get_msg`` that waits in slices of ``seconds`` up to its timeout (or forever), each slice a fresh poll of
    the socket. nbclient waits for a cell's execute reply in one call with the whole cell timeout (none by default);
    if the event loop misses the socket's wake-up, the reply sits unread while the kernel is idle, and the cell never
    ends (reported with widget cells, jupyter/nbclient#312). A fresh poll sees a pending message, so a missed
    wake-up now costs at most one slice."""
    async def wait(timeout=None, **kwargs):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = seconds if deadline is None else min(seconds, max(0.0, deadline - time.monotonic()))
            try:
                return await ensure_async(get_msg(timeout=left, **kwargs))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
    return wait


class _Client(PapermillNotebookClient):
    """papermill's notebook client with a deadline on the one kernel round trip that has none.

    After the last cell papermill asks the kernel for its ``kernel_info`` and waits for the reply without a timeout;
    when that reply goes missing the run never returns (nteract/papermill#711, seen on CI machines). (The stall this
    project's CI met was another one, in a widget cell: see ``_sliced``.) A missing reply is asked for again; after the
    last try the notebook gets a minimal language info (the reply serves only that metadata).
    """
    reply_tries, reply_seconds = 3, 30

    def execute(self, **kwargs):
        self.reset_execution_trackers()
        with self.setup_kernel(**kwargs):
            self.kc.shell_channel.get_msg = _sliced(self.kc.shell_channel.get_msg)
            self.papermill_execute_cells()
            self.nb.metadata["language_info"] = self.language_info()
            self.set_widgets_metadata()
        return self.nb

    def request_kernel_info(self):
        return self.kc.kernel_info()

    async def async_language_info(self):
        for _ in range(self.reply_tries):
            msg_id = self.request_kernel_info()
            for _ in range(self.reply_seconds):
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
                except Empty:
                    await self._async_check_alive()
                    continue
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg["content"]["language_info"]
            self.log.warning(f"no kernel_info reply within {self.reply_seconds} s")
        return {"name": "python", "version": sys.version.split()[0]}

    language_info = run_sync(async_language_info)


class _Engine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, start_timeout=60, execution_timeout=None, input_path=None,
                                 **kwargs):
        return _Client(nb_man, kernel_name=kernel_name, startup_timeout=start_timeout, timeout=execution_timeout,
                       log=logger, **kwargs).execute()


papermill_engines.register("interpret-mlp", _Engine)


# No cell of the study may run longer than this (seconds; $INTERPRET_MLP_CELL_TIMEOUT overrides): a stalled kernel
# stops the run with the notebook and cell named instead of hanging it. The longest cpu-profile cell (one MLP's
# training) takes about 5 minutes on 2 cores.
CELL_TIMEOUT = 3600


def execute_notebook(source, output, parameters, progress=False):
    """Run ``source`` with ``parameters`` into ``output`` (papermill, from ``notebooks/``, kernel python3).
    ``progress``: show which cell runs, out of how many, with the time so far, and stream the notebook's own output
    (its progress bars) to the console."""
    import papermill
    timeout = int(os.environ.get("INTERPRET_MLP_CELL_TIMEOUT", CELL_TIMEOUT))
    return papermill.execute_notebook(str(source), str(output), parameters=parameters, cwd=str(NOTEBOOKS),
                                      progress_bar=progress, log_output=progress, execution_timeout=timeout,
                                      kernel_name="python3", engine_name="interpret-mlp")


def run_notebook(source, target, parameters, progress=False, downloads=()):
    """Execute ``source`` with papermill into ``target`` (atomically: a failed run leaves no target), shaped for the
    book, with the results files it shows (``downloads``, or a callable giving them once it ran) copied into
    ``target``'s folder under ``results/`` and linked."""
    import papermill
    from nbclient.exceptions import CellTimeoutError
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.ipynb")
    try:
        execute_notebook(source, tmp, parameters, progress)
        downloads = downloads() if callable(downloads) else downloads
        prepare_for_book(tmp, downloads, target.parent / "results")
        tmp.replace(target)
    except papermill.PapermillExecutionError as e:
        raise SystemExit(f"\n{source.name} {parameters} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                         f"(the partly executed notebook is {tmp})") from None
    except CellTimeoutError as e:
        raise SystemExit(f"\n{source.name} {parameters}: a cell ran longer than the cell timeout "
                         f"({os.environ.get('INTERPRET_MLP_CELL_TIMEOUT', CELL_TIMEOUT)} s; set "
                         f"$INTERPRET_MLP_CELL_TIMEOUT to allow more). {e}\n"
                         f"(the partly executed notebook is {tmp})") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=profiles.STUDY_PROFILES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-book", action="store_true", help="run the notebooks only")
    parser.add_argument("--quiet", action="store_true", help="one line per notebook, without its cells and output")
    args = parser.parse_args(argv)
    if not args.quiet:  # papermill reports each cell's output through its logger
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The notebooks run in notebooks/, so paths given relative to where this command was typed are made absolute.
    for name in (ARCHIVE_ENV, "INTERPRET_MLP_DATA"):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).resolve())
    start = time.time()
    for step in manifest.steps(args.profile, args.seed):
        source, target = NOTEBOOKS / step.notebook, step.target(BOOK, args.profile)
        parameters = {"profile": args.profile, **step.parameters}
        name = step.notebook
        label = f"{name} {parameters}"
        if up_to_date(source, target, parameters):
            print(f"[skip] {label}: {os.path.relpath(target, ROOT)} is up to date", flush=True)
            continue
        t = time.time()
        last = read_stamp(target, parameters)
        estimate = f" (last run here: {last['seconds']} s)" if last and last.get("seconds") else ""
        print(f"[run ] {label}{estimate}", flush=True)
        run_notebook(source, target, parameters, progress=not args.quiet,
                     downloads=lambda step=step: step.download_paths(args.profile))
        write_stamp(target, parameters, time.time() - t)
        print(f"[done] {label} in {time.time() - t:.0f} s -> {os.path.relpath(target, ROOT)}", flush=True)
    if not args.no_book:
        if BOOK == ROOT / "book":
            write_toc()
            write_intro()
        build_book()
    print(f"study ({args.profile} profile) finished in {(time.time() - start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
