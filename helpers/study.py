"""The whole study in one command: every notebook through papermill, then the book.

    python -m helpers.study --profile cpu

Executed notebooks are written to ``book/<profile>/``. A step is skipped when this machine ran it before (a stamp
in ``Data/results/<profile>/study/``, so a fresh clone with committed notebooks but no data runs everything) with
the same parameters, after the last change to the notebook and the ``helpers`` code; a failing notebook stops the
run with its error.

Pages whose inputs are ready run at the same time (``--workers``, each page a process with its share of the cores
as torch threads; ``Step.after``, from what each page reads, says which page waits for which): on 2 cores two pages
of one thread each do about 1.35x the work of one page of two threads, as torch's second thread adds only some 40%.
The numbers then are those of ``--workers`` and the threads it gives each page, whatever the order the pages happen
to run in.
"""
import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger

from helpers import freeze, manifest, profiles
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
from helpers.manifest import read_stamp, stamp_path, up_to_date, write_stamp
from helpers.paths import ROOT

NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"


# The explorers (ipywidgets) need a running kernel: the book cannot use them, so the study runs 01 and 02 with
# explorer=False (``manifest.steps``). They run when a user opens the notebook, and in the tests (headless in
# test_notebooks, in JupyterLab in test_notebooks_jupyterlab; the CI hang once met in a widget cell is what ``_sliced``
# guards against). Every other setting comes from the profile (``helpers.profiles``).


def steps(profile, seed=0):
    """(source notebook, executed notebook, parameters) in the order the study runs them (``manifest.steps``)."""
    return [(s.notebook, s.target(BOOK, profile), s.run_parameters(profile))
            for s in manifest.steps(profile, seed)]


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


def default_workers():
    """Pages run at once: one where a GPU is at hand (pages would share it) or on one core, else two."""
    import torch
    return 1 if torch.cuda.is_available() or len(os.sched_getaffinity(0)) < 2 else 2


def run_step(step, args, progress):
    source, target = NOTEBOOKS / step.notebook, step.target(BOOK, args.profile)
    parameters = step.run_parameters(args.profile)
    t = time.time()
    run_notebook(source, target, parameters, progress=progress,
                 downloads=lambda: step.download_paths(args.profile))
    write_stamp(target, parameters, time.time() - t)


def _label(step, profile):
    return f"{step.notebook} {step.run_parameters(profile)}"


def _announce(step, profile):
    last = read_stamp(step.target(BOOK, profile), step.run_parameters(profile))
    estimate = f" (last run here: {last['seconds']} s)" if last and last.get("seconds") else ""
    print(f"[run ] {_label(step, profile)}{estimate}", flush=True)


def _finished(step, profile, started):
    print(f"[done] {_label(step, profile)} in {time.time() - started:.0f} s -> "
          f"{os.path.relpath(step.target(BOOK, profile), ROOT)}", flush=True)


def run_pages(todo, done, args, workers):
    """Run the steps of ``todo``, ``workers`` at a time, each as soon as the pages it reads (``Step.after``) are in
    ``done``, the ready page with the longest chain of pages after it first (``manifest.longest_paths``, from each
    page's time when it last ran); each page is a child process (``--step``) logging to a file beside its stamp.
    A failure lets the running pages finish, starts no other, and stops the study with the failed page's log."""
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    chain = manifest.longest_paths(todo, {s.page: manifest.expected_seconds(s, BOOK, args.profile) for s in todo})
    pending, running, failed = sorted(todo, key=lambda s: -chain[s.page]), {}, []
    print(f"running up to {workers} pages at a time, {threads} torch thread(s) each", flush=True)
    try:
        _schedule(pending, running, failed, done, args, workers, env)
    finally:  # an interrupted study leaves no page running
        for proc, *_ in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the page and its kernel
    if failed:
        raise SystemExit(f"the study stopped: {', '.join(failed)} failed (see above); "
                         f"{len(pending)} page(s) did not run")


def _schedule(pending, running, failed, done, args, workers, env):
    while pending or running:
        for step in [s for s in pending if not failed and all(a in done for a in s.after)][:workers - len(running)]:
            pending.remove(step)
            log = stamp_path(step.target(BOOK, args.profile), step.run_parameters(args.profile)).with_suffix(".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            _announce(step, args.profile)
            with open(log, "w") as out:
                command = [sys.executable, "-m", "helpers.study", "--profile", args.profile, "--seed", str(args.seed),
                           "--book", str(BOOK), "--step", step.page]
                running[step.page] = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                                       stderr=subprocess.STDOUT, start_new_session=True),
                                        step, log, time.time())
        if not running:
            if pending and not failed:
                raise SystemExit(f"no page can run: {[s.page for s in pending]} wait for pages that never ran")
            break
        time.sleep(0.5)
        for page, (proc, step, log, t) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[page]
            if proc.returncode == 0:
                done.add(page)
                _finished(step, args.profile, t)
            else:
                failed.append(page)
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
                print(f"[fail] {_label(step, args.profile)} (its log: {log}):\n{tail}", flush=True)


def main(argv=None):
    global BOOK
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=profiles.STUDY_PROFILES)
    parser.add_argument("--seed", type=int, default=0, help="the pages' own random picks (image splits, shuffles, "
                        "figures); the training, SAE and AM seeds are the profile's lists")
    parser.add_argument("--no-book", action="store_true", help="run the notebooks only")
    parser.add_argument("--quiet", action="store_true", help="one line per notebook, without its cells and output")
    parser.add_argument("--workers", type=int, default=None,
                        help="pages run at once (default: 1 with a GPU or one core, else 2); 1 runs them in order "
                             "in this process, with torch's default threads")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # one page, run by the parallel runner
    parser.add_argument("--book", type=Path, help=argparse.SUPPRESS)  # where the parallel runner writes the pages
    args = parser.parse_args(argv)
    if args.book:
        BOOK = args.book
    steps_ = manifest.steps(args.profile, args.seed)
    if args.step:
        chosen = [s for s in steps_ if s.page == args.step]
        if not chosen:
            raise SystemExit(f"--step {args.step!r} is no page of the {args.profile} study; its pages are "
                             f"{', '.join(s.page for s in steps_)}")
        run_step(chosen[0], args, progress=False)
        return
    freeze.guard(args.profile)  # confirmatory seeds run only under the frozen rules
    workers = args.workers or default_workers()
    if workers < 1:
        raise SystemExit(f"--workers {workers}: give at least 1 (1 runs the pages one after another)")
    if not args.quiet and workers == 1:  # papermill reports each cell's output through its logger
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The notebooks run in notebooks/, so paths given relative to where this command was typed are made absolute.
    for name in (ARCHIVE_ENV, "INTERPRET_MLP_DATA"):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).resolve())
    start = time.time()
    todo, done = [], set()
    for step in steps_:
        source, target = NOTEBOOKS / step.notebook, step.target(BOOK, args.profile)
        if up_to_date(source, target, step.run_parameters(args.profile)):
            print(f"[skip] {_label(step, args.profile)}: {os.path.relpath(target, ROOT)} is up to date", flush=True)
            done.add(step.page)
        else:
            todo.append(step)
    if workers > 1:
        run_pages(todo, done, args, workers)
    else:
        for step in todo:
            t = time.time()
            _announce(step, args.profile)
            run_step(step, args, progress=not args.quiet)
            _finished(step, args.profile, t)
    if not args.no_book:
        if BOOK == ROOT / "book":
            write_toc()
            write_intro()
        build_book()
    print(f"study ({args.profile} profile) finished in {(time.time() - start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
