"""The study's time per stage, from the runner's log, beside the confirmatory study's budget.

    python -m helpers.study --profile cpu --quiet > study.log
    python benchmarks/stage_times.py study.log [--workers 2] [--scale 1.0]

Each page's time comes from its ``[done]`` line; a stage's minutes are its pages' seconds summed over the workers that
ran them at once, divided by their number: its share of the study's wall time. ``BUDGET`` is the confirmatory study's
budget (issue 35): minutes per stage on the 2-core Intel Xeon that ran the study of 2026-12-05 (``4c77573``) in 32.6
minutes, 60 in all; ``--scale`` converts it to another machine (that machine's time for the same study over 32.6, or
the ratio of ``benchmarks/step_times.py``'s figures). The instrument issues and the confirmatory run report their
stages against it.
"""
import argparse
import ast
import re
from pathlib import Path

BUDGET = {"training": 18, "SAE pages": 20, "activation maximization": 10, "comparisons": 6,
          "competence-matched pair": 3, "atlas, answers and book": 3}
DONE = re.compile(r"\[done\] (\S+) (\{.*\}) in (\d+) s")


def stage(notebook, parameters):
    """The budget's stage of one page."""
    if str(parameters.get("profile", "")).endswith("-matched"):
        return "competence-matched pair"
    return {"00": "training", "01": "activation maximization", "02": "SAE pages",
            "03": "comparisons"}.get(notebook[:2], "atlas, answers and book")


def stage_seconds(log):
    """{stage: seconds summed over its pages} and the study's total wall seconds (its last line), from a log."""
    seconds = dict.fromkeys(BUDGET, 0)
    total = None
    for line in Path(log).read_text().splitlines():
        if m := DONE.search(line):
            seconds[stage(m.group(1), ast.literal_eval(m.group(2)))] += int(m.group(3))
        elif m := re.search(r"finished in ([\d.]+) minutes", line):
            total = float(m.group(1)) * 60
    return seconds, total


def table(log, workers=2, scale=1.0):
    """A Markdown table: each stage's minutes (its pages' seconds / ``workers`` / 60) beside its budget × ``scale``;
    the book's build is the wall time left over, counted in the last stage."""
    seconds, total = stage_seconds(log)
    minutes = {k: v / workers / 60 for k, v in seconds.items()}
    if total is not None:
        minutes["atlas, answers and book"] += max(0.0, total / 60 - sum(minutes.values()))
    rows = [f"| {k} | {minutes[k]:.1f} | {BUDGET[k] * scale:.1f} |" for k in BUDGET]
    rows.append(f"| all | {sum(minutes.values()):.1f} | {sum(BUDGET.values()) * scale:.1f} |")
    return "\n".join(["| stage | minutes | budget |", "| --- | --- | --- |", *rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="the output of `python -m helpers.study --profile cpu --quiet`")
    parser.add_argument("--workers", type=int, default=2, help="pages the runner ran at once")
    parser.add_argument("--scale", type=float, default=1.0, help="this machine's time over the budget machine's")
    args = parser.parse_args(argv)
    print(table(args.log, args.workers, args.scale))


if __name__ == "__main__":
    main()
