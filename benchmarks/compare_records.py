"""Compare the smoke-study result records of two data folders: JSON records and CSV tables, equal up to the
renamed keys and the added columns, and to float rounding."""
import json, math, sys
from pathlib import Path
import pandas as pd

RENAMES = {"accuracy sae": "accuracy_spliced", "accuracy original": "accuracy_original",
           "accuracy mean-ablated": "accuracy_mean_ablated", "loss recovered vs mean-ablated": "loss_recovered"}

def norm(x):
    if isinstance(x, dict):
        return {RENAMES.get(k, k): norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [norm(v) for v in x]
    return x

def diff(a, b, where, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                out.append(f"{where}.{k}: missing after")
            else:
                diff(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{where}[{i}]", out)
    elif isinstance(a, float) and isinstance(b, float):
        if not (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1, abs(a))):
            out.append(f"{where}: {a} vs {b}")
    elif a != b:
        out.append(f"{where}: {a!r} vs {b!r}")

before, after = Path(sys.argv[1]), Path(sys.argv[2])
problems, checked = [], 0
for p in sorted(before.rglob("*")):
    rel = p.relative_to(before)
    if "study" in rel.parts or p.suffix not in (".json", ".csv"):
        continue
    q = after / rel
    if not q.exists():
        problems.append(f"{rel}: missing after"); continue
    checked += 1
    if p.suffix == ".json":
        a, b = norm(json.loads(p.read_text())), json.loads(q.read_text())
        if "markdown" in a:   # report text: wording may change, numbers may not
            a.pop("markdown"); b.pop("markdown")
        if "reading" in a:
            a.pop("reading"); b.pop("reading")
        diff(a, b, str(rel), problems)
    else:
        a, b = pd.read_csv(p), pd.read_csv(q)
        a = a.rename(columns=RENAMES)
        if "failed" in a:
            a["failed"] = a["failed"].replace("none", float("nan"))
        for c in a.columns:
            if c not in b:
                problems.append(f"{rel}: column {c} missing after"); continue
            diff(norm(a[c].tolist()), b[c].tolist(), f"{rel}:{c}", problems)
print(f"{checked} records compared; {len(problems)} differences")
print("\n".join(problems[:60]))
