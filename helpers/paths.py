"""Where the study keeps data, checkpoints and results, and how it writes them safely."""
import contextlib
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir():
    """Datasets, caches and checkpoints: ``Data/``, or ``$INTERPRET_MLP_DATA`` (read at each call, so
    tests and notebooks can redirect it)."""
    return Path(os.environ.get("INTERPRET_MLP_DATA", ROOT / "Data"))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or an exception therefore never leaves a half-written file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
