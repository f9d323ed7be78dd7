"""Are two runs' result records the same? A check for changes that must not move a number (a refactoring).

    python benchmarks/compare_records.py BEFORE/results/smoke AFTER/results/smoke

Compares every JSON record and CSV table under the first folder with its namesake under the second: values equal up
to float rounding (1e-9 relative), report text equal, keys and columns the first has present in the second (the
second may add some). Metric keys renamed from display labels to identifiers are mapped (``RENAMES``). Prints the
differences and exits 1 if there are any.
"""
import json
import math
import sys
from pathlib import Path

import pandas as pd

RENAMES = {"accuracy sae": "accuracy_spliced", "accuracy original": "accuracy_original",
           "accuracy mean-ablated": "accuracy_mean_ablated", "loss recovered vs mean-ablated": "loss_recovered"}


SEED_LISTS = ("am_seeds", "model_seeds", "sae_seeds")


def renamed(x):
    if isinstance(x, dict):
        return {RENAMES.get(k, k): list(range(v)) if k in SEED_LISTS and isinstance(v, int) and isinstance(
            x.get("overrides"), dict) else renamed(v) for k, v in x.items()}
    if isinstance(x, list):
        return [renamed(v) for v in x]
    return x


def differences(a, b, where):
    """Where ``b`` differs from ``a`` (nested dicts and lists; floats to 1e-9 relative, NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in a for d in (differences(a[k], b[k], f"{where}.{k}") if k in b else
                                       [f"{where}.{k}: missing"])]
    if isinstance(a, list) and isinstance(b, list):
        head = [] if len(a) == len(b) else [f"{where}: {len(a)} items, then {len(b)}"]
        return head + [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a))
        return [] if same else [f"{where}: {a} then {b}"]
    return [] if a == b else [f"{where}: {a!r} then {b!r}"]


def table(path):
    frame = pd.read_csv(path).rename(columns=RENAMES)
    if "failed" in frame:  # the gate-failure column once wrote "none" for no failure, now an empty cell
        frame["failed"] = frame["failed"].replace("none", float("nan"))
    return {c: frame[c].tolist() for c in frame.columns}


def compare_folders(before, after):
    """(number of records compared, differences)."""
    found, checked = [], 0
    for p in sorted(Path(before).rglob("*")):
        rel = p.relative_to(before)
        if "study" in rel.parts or p.suffix not in (".json", ".csv"):
            continue  # the study runner's stamps hold times
        q = Path(after) / rel
        if not q.exists():
            found.append(f"{rel}: missing")
            continue
        checked += 1
        if p.suffix == ".json":
            found += differences(renamed(json.loads(p.read_text())), json.loads(q.read_text()), str(rel))
        else:
            found += differences(table(p), table(q), str(rel))
    return checked, found


if __name__ == "__main__":
    checked, found = compare_folders(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{checked} records compared; {len(found)} differences")
    print("\n".join(found))
    sys.exit(1 if found else 0)
