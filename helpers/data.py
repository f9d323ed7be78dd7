"""CIFAR-10 as whole-split uint8 tensors, from the first source that exists, cached once.

Sources, in the order they are tried:
  1. FFCV ``.beton`` files ``Data/{split}_32.beton`` (read with ffcv, when installed);
  2. torchvision's ``Data/cifar-10-batches-py``;
  3. a JPEG ImageFolder tree or the ``cifar10-jpg.tar.gz`` archive: ``$CIFAR10_JPG``,
     ``Data/cifar10-jpg.tar.gz`` or ``Data/cifar10-jpg/``.
Decoded arrays are cached in ``Data/cache/`` and load in about a second afterwards.
"""
import contextlib
import hashlib
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from helpers.paths import atomic_path, shown_path
from helpers.paths import data_dir as default_data_dir

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
PER_CLASS = {"train": 5000, "test": 1000}
ARCHIVE_ENV = "CIFAR10_JPG"
HOW_TO_GET = (
    "Get CIFAR-10 one of these ways: on a machine with internet run "
    "`python -c \"import torchvision; torchvision.datasets.CIFAR10('Data', download=True)\"`; "
    "or put the study's FFCV files train_32.beton/test_32.beton in Data/; "
    f"or point ${ARCHIVE_ENV} at a cifar10-jpg.tar.gz archive or a folder with train/<class>/*.jpg and "
    "test/<class>/*.jpg."
)


last_source = {}  # split -> "kind path" of the source load_cifar10 used last (for run records)


class DataError(RuntimeError):
    """A dataset source is missing, truncated or corrupt."""


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}; use 'train' or 'test'.")


def _check_arrays(images, labels, where, per_class=None):
    """Refuse anything that is not a complete, well-formed split (never a silent partial dataset)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise DataError(f"{where}: images have dtype {images.dtype} and shape {images.shape}, "
                        "expected uint8 (N, 3, 32, 32).")
    if labels.shape != (len(images),) or len(images) == 0:
        raise DataError(f"{where}: {len(images)} images but labels of shape {labels.shape}.")
    if labels.min() < 0 or labels.max() >= len(CLASSES):
        raise DataError(f"{where}: labels outside 0..9 (min {labels.min()}, max {labels.max()}).")
    if per_class is not None:
        counts = np.bincount(labels, minlength=len(CLASSES))
        if (counts != per_class).any():
            raise DataError(f"{where}: images per class are {counts.tolist()}, expected {per_class} each; "
                            "the file is truncated or incomplete. Replace it with a complete copy.")


# ----------------------------------------------------------------------------- readers

@contextlib.contextmanager
def torch_threads_kept():
    """Importing ffcv sets torch to one thread for the whole process (and its Loader sets it to ``num_workers``):
    on 2 cores that halved the speed of every later training step. Restore the count that was set before."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def read_beton(path):
    """All records of an FFCV file with fields ``image`` (RGB) and ``label``, in file order."""
    with torch_threads_kept():
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption

        loader = Loader(str(path), batch_size=1000, num_workers=1, order=OrderOption.SEQUENTIAL,
                        drop_last=False,  # ffcv drops the last partial batch by default
                        pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
        images, labels = [], []
        for image, label in loader:
            # The Loader reuses its output buffers between batches: copy what we keep.
            images.append(np.array(image).transpose(0, 3, 1, 2).copy())
            labels.append(np.array(label).reshape(-1).astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_pickled_batches(folder, split):
    """torchvision's ``cifar-10-batches-py`` layout (the original pickled batches)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = Path(folder) / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as e:
            raise DataError(f"{path}: cannot read CIFAR-10 batch ({e}). Delete {folder} and download it again.") from e
    return np.concatenate(images), np.concatenate(labels)


def _decode_jpegs(blobs, where):
    with warnings.catch_warnings():  # torchvision 0.29 announces a move of its decoders to torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg
        try:
            decoded = decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs],
                                  mode=ImageReadMode.RGB)
        except RuntimeError as e:
            raise DataError(f"{where}: a JPEG does not decode ({e}). Replace the file with a complete copy.") from e
    for image in decoded:
        if image.shape != (3, 32, 32):
            raise DataError(f"{where}: an image has shape {tuple(image.shape)}, expected (3, 32, 32).")
    return torch.stack(decoded).numpy()


def read_image_folder(root, split):
    """``root/{split}/<class>/*.jpg`` (sorted folder names give CIFAR-10's label order)."""
    blobs, labels = [], []
    for label, name in enumerate(CLASSES):
        folder = Path(root) / split / name
        if not folder.is_dir():
            raise DataError(f"{root}: folder {folder} is missing; expected one folder per class {CLASSES}.")
        for file in sorted(folder.iterdir()):
            blobs.append(file.read_bytes())
            labels.append(label)
    return _decode_jpegs(blobs, root), np.asarray(labels, dtype=np.int64)


def read_archive(path, split):
    """The ``split/<class>/NNNN.jpg`` members of a ``.tar.gz`` archive, in (class, file name) order."""
    members = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = member.name.strip("./").split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == split and parts[1] in CLASSES:
                    members[(CLASSES.index(parts[1]), parts[2])] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise DataError(f"{path}: the archive is truncated or corrupt ({e}). Replace it with a complete copy.") from e
    if not members:
        raise DataError(f"{path}: no {split}/<class>/*.jpg members; expected the layout of cifar10-jpg.tar.gz.")
    keys = sorted(members)
    return _decode_jpegs([members[k] for k in keys], path), np.asarray([k[0] for k in keys], dtype=np.int64)


# ----------------------------------------------------------------------------- source choice

def find_sources(split, data_dir=None):
    """Every place looked at, in order, as (kind, path, exists, note)."""
    data_dir = Path(data_dir or default_data_dir())
    beton = data_dir / f"{split}_32.beton"
    have_ffcv, ffcv_note = False, ""
    if beton.is_file():  # only then: importing ffcv compiles its numba code, seconds in every process
        try:
            with torch_threads_kept():
                import ffcv  # noqa: F401
            have_ffcv = True
        except ImportError:
            ffcv_note = " (ffcv is not installed: `pip install -e .[ffcv]`)"
    places = [("beton", beton, have_ffcv, ffcv_note),
              ("pickled", data_dir / "cifar-10-batches-py", (data_dir / "cifar-10-batches-py").is_dir(), "")]
    jpg = [Path(os.environ[ARCHIVE_ENV])] if os.environ.get(ARCHIVE_ENV) else []
    jpg += [data_dir / "cifar10-jpg.tar.gz", data_dir / "cifar10-jpg"]
    for path in jpg:
        kind = "folder" if path.is_dir() or not path.name.endswith(".tar.gz") else "archive"
        note = f" (from ${ARCHIVE_ENV})" if path == jpg[0] and os.environ.get(ARCHIVE_ENV) else ""
        places.append((kind, path, path.exists(), note))
    return places


def _cache_file(kind, path, split, data_dir):
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return Path(data_dir) / "cache" / f"cifar10-{split}-{kind}-{key}.npz"


def load_cifar10(split, data_dir=None, verbose=True):
    """The whole ``split`` as (images uint8 (N, 3, 32, 32), labels int64 (N,), class names).

    Takes the first source that exists (see the module docstring) and prints which one it used.
    """
    _check_split(split)
    data_dir = Path(data_dir or default_data_dir())
    places = find_sources(split, data_dir)
    usable = [(kind, path) for kind, path, ok, _ in places if ok]
    if not usable:
        looked = "\n".join(f"  - {kind}: {path}{note}" for kind, path, _, note in places)
        raise DataError(f"No CIFAR-10 {split} data found. Looked at:\n{looked}\n{HOW_TO_GET}")
    kind, path = usable[0]
    cache = _cache_file(kind, path, split, data_dir)
    if cache.exists():
        try:
            with np.load(cache) as z:
                images, labels = z["images"], z["labels"]
        except Exception as e:
            raise DataError(
                f"{cache}: the cache is truncated or corrupt ({e}). Delete it; the next call rebuilds it."
            ) from e
        _check_arrays(images, labels, cache)
    else:
        if kind == "beton":
            images, labels = read_beton(path)
        elif kind == "pickled":
            images, labels = read_pickled_batches(path, split)
        elif kind == "folder":
            images, labels = read_image_folder(path, split)
        else:
            images, labels = read_archive(path, split)
        _check_arrays(images, labels, path, PER_CLASS[split] if kind in ("folder", "archive") else None)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=images, labels=labels)
    last_source[split] = f"{kind} {shown_path(path)}"
    if verbose:
        print(f"CIFAR-10 {split}: {len(images)} images from {last_source[split]}")
    return torch.from_numpy(images), torch.from_numpy(labels), list(CLASSES)


# ----------------------------------------------------------------------------- batches

def to_float(images):
    """uint8 (N, 3, 32, 32) -> float in [0, 1], the input space of every model of the study."""
    return images.float().div_(255)


def augment(images, generator=None, pad=4):
    """Standard CIFAR augmentation on a uint8 batch: a ``pad``-pixel zero-padded random crop (0: none) and a
    horizontal flip."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=images.device)
    flip = torch.rand(n, generator=generator, device=images.device) < 0.5
    rows = dy[:, None] + torch.arange(h, device=images.device)            # (n, h)
    cols = dx[:, None] + torch.arange(w, device=images.device)            # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)                 # flip by reversing columns
    return gather_crops(padded, rows, cols)


def gather_crops(padded, rows, cols):
    """Per-image crops of a batch in one indexing op: out[i] = padded[i][:, rows[i]][:, :, cols[i]]."""
    idx = torch.arange(len(padded), device=padded.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def batches(images, labels, batch_size, shuffle=True, augmented=True, seed=0, drop_last=True, pad=4):
    """One epoch of (float images in [0, 1], labels), with data kept as one tensor on its device; ``augmented``:
    random crops of ``pad`` pixels and flips (``augment``)."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    n = len(images)
    order = (torch.randperm(n, generator=generator, device=images.device) if shuffle
             else torch.arange(n, device=images.device))
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        x = images[idx]
        if augmented:
            x = augment(x, generator, pad)
        yield to_float(x), labels[idx]


# ----------------------------------------------------------------------------- FFCV files

class _ArrayDataset:
    """(HWC uint8 image, label) pairs, the record format ffcv's DatasetWriter expects."""

    def __init__(self, images, labels):
        self.images, self.labels = images.permute(0, 2, 3, 1).numpy(), labels.numpy()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def write_beton(images, labels, path):
    """Write uint8 (N, 3, 32, 32) images to an FFCV file with fields ``image`` and ``label``.

    ``write_mode='raw'`` keeps pixels exact (JPEG mode would change them). ffcv's writer hangs if a worker
    raises, so call this in a process of its own under a timeout (``python -m helpers.data --beton``).
    """
    with torch_threads_kept(), atomic_path(path) as tmp:
        from ffcv.fields import IntField, RGBImageField
        from ffcv.writer import DatasetWriter
        DatasetWriter(str(tmp), {"image": RGBImageField(write_mode="raw"), "label": IntField()},
                      num_workers=1).from_indexed_dataset(_ArrayDataset(images, labels))


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Decode CIFAR-10 once; with --beton also write FFCV files.")
    parser.add_argument("--beton", action="store_true", help="write {split}_32.beton into --out")
    parser.add_argument("--out", default=None, help="folder for the .beton files (default: the data folder)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each split")
    args = parser.parse_args()
    for split in SPLITS:
        images, labels, _ = load_cifar10(split)
        if args.beton:
            target = Path(args.out or default_data_dir()) / f"{split}_32.beton"
            write_beton(images[:args.limit], labels[:args.limit], target)
            print(f"wrote {target}")
