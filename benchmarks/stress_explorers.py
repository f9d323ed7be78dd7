"""Run each explorer notebook headlessly many times, with its widget explorer on, and count the runs that stall.

    python benchmarks/stress_explorers.py [--runs 20] [--cell-timeout 120]

A stall is a cell that does not finish within ``--cell-timeout`` seconds (nbclient waiting on a kernel that has
gone idle was seen twice in one CI run, in a widget cell). The notebooks run on the smoke profile (tiny models,
the tests' settings) in a data folder of their own, so the first run trains the smoke models and SAEs once
(about a minute) and every later run reuses them. Prints one line per run and a summary; exits 1 on any stall.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPLORERS = ("01_activation_maximization.ipynb", "02_sae.ipynb")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each explorer notebook")
    parser.add_argument(
        "--cell-timeout", type=int, default=120, help="seconds a cell may take before it counts as stalled"
    )
    args = parser.parse_args()
    os.environ.setdefault("INTERPRET_MLP_DATA", tempfile.mkdtemp(prefix="stress-data-"))
    sys.path.insert(0, str(ROOT))
    from helpers import study

    out = Path(tempfile.mkdtemp(prefix="stress-notebooks-"))
    study.BOOK = out  # the executed notebooks go to a scratch folder, not to book/
    study.main(["--profile", "smoke", "--no-book", "--quiet"])  # models, AM results and SAEs the explorers read
    os.environ["INTERPRET_MLP_CELL_TIMEOUT"] = str(args.cell_timeout)  # the explorer runs only, not the set-up
    stalls, failures, seconds = [], [], []
    for run in range(args.runs):
        for name in EXPLORERS:
            parameters = dict(profile="smoke", explorer=True, **({"model": "cnn"} if name == "02_sae.ipynb" else {}))
            start = time.time()
            try:
                study.run_notebook(study.NOTEBOOKS / name, out / f"stress_{run}_{name}", parameters)
                status = "ok"
            except SystemExit as e:
                status = "STALL" if "longer than the cell timeout" in str(e) else "FAILED"
                (stalls if status == "STALL" else failures).append((run, name, str(e).strip().splitlines()[0]))
            seconds.append(time.time() - start)
            print(f"run {run + 1}/{args.runs} {name}: {status} in {seconds[-1]:.0f} s", flush=True)
    total = args.runs * len(EXPLORERS)
    print(f"{total} runs: {len(stalls)} stalled, {len(failures)} failed otherwise; "
          f"median {sorted(seconds)[len(seconds) // 2]:.0f} s per run")
    for s in stalls + failures:
        print("  ", *s)
    sys.exit(1 if stalls or failures else 0)


if __name__ == "__main__":
    main()
