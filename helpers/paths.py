"""Where the study keeps data, checkpoints and results, and how it writes them safely."""
import contextlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_dir():
    """Datasets, caches and checkpoints: ``Data/``, or ``$INTERPRET_MLP_DATA`` (read at each call, so
    tests and notebooks can redirect it)."""
    return Path(os.environ.get("INTERPRET_MLP_DATA", ROOT / "Data"))


def shown_path(path):
    """``path`` as notebooks print it and records keep it: under the data folder as ``Data/...``, under the checkout
    relative to it, anywhere else by its name alone, so that no page of the book shows the machine that ran it."""
    path = Path(path).absolute()
    for base, label in ((data_dir(), "Data"), (ROOT, "")):
        try:
            return str(Path(label) / path.relative_to(Path(base).absolute()))
        except ValueError:
            pass
    return path.name


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


def load_cached(path, key):
    """The result saved at ``path`` with ``key`` (by ``save_cached``), or None when there is none with that key."""
    import pickle

    import torch
    path = Path(path)
    if not path.exists():
        return None
    try:  # tensors and plain containers only: a crafted file cannot run code here
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(f"{path}: refused to load, it holds objects other than tensors and plain values "
                           f"(a file from an older version, or not written by this study); delete it to "
                           f"recompute.") from e
    except Exception as e:
        raise RuntimeError(f"{path}: cached result is truncated or corrupt ({e}); delete it to recompute.") from e
    if saved.get("key") != key:
        return None
    print(f"loaded cached result {shown_path(path)}", file=sys.stderr)  # a log: the book leaves stderr out
    return saved["value"]


def has_cached(path, key):
    """Whether ``path`` holds a result saved with ``key``, read without loading its tensors (memory-mapped). A file
    that cannot be read is refused as ``load_cached`` refuses it."""
    import torch
    path = Path(path)
    if not path.exists():
        return False
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("key") == key
    except Exception:
        load_cached(path, key)  # raises its error, which names the file and the fix
        raise


def save_cached(path, key, value):
    """Save ``value`` at ``path`` with ``key`` (atomically); returns ``value``."""
    import torch
    with atomic_path(path) as tmp:
        torch.save({"key": key, "value": value}, tmp)
    return value


def cached(path, key, compute):
    """``compute()``, saved to ``path`` with ``key``; a later call with the same key loads it instead.

    The key should name everything the result depends on (settings, checkpoint identity)."""
    value = load_cached(path, key)
    return save_cached(path, key, compute()) if value is None else value
