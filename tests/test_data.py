import os
import pickle
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import torch
from conftest import ARCHIVE

from helpers import data
from helpers.data import DataError, augment, batches, load_cifar10


def test_real_archive_splits(cifar_train, cifar_test):
    for (images, labels, classes), n in ((cifar_train, 5000), (cifar_test, 1000)):
        assert images.dtype == torch.uint8 and images.shape == (10 * n, 3, 32, 32)
        assert labels.dtype == torch.int64
        assert torch.bincount(labels).tolist() == [n] * 10
        assert classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        # Stored class by class in label order, and real images (not blank): a mean near CIFAR's 0.47.
        assert (labels.diff() >= 0).all()
        assert 0.4 < images.float().mean().item() / 255 < 0.55


def test_cache_is_reused(cifar_test, data_env):
    caches = sorted((data_env / "cache").glob("cifar10-test-archive-*.npz"))
    assert len(caches) == 1
    before = caches[0].stat().st_mtime_ns
    start = time.time()
    images, labels, _ = load_cifar10("test")
    assert time.time() - start < 5
    assert caches[0].stat().st_mtime_ns == before
    assert torch.equal(images, cifar_test[0]) and torch.equal(labels, cifar_test[1])


def _small_archive(path, per_class, split="test", skip_class=None):
    """A cifar10-jpg-style archive with the first ``per_class`` images of each class of the real one."""
    taken = {}
    with tarfile.open(ARCHIVE, "r:gz") as src, tarfile.open(path, "w:gz") as dst:
        for member in src:
            parts = member.name.split("/")
            if member.isfile() and parts[0] == split and parts[1] != skip_class:
                if taken.get(parts[1], 0) < per_class:
                    taken[parts[1]] = taken.get(parts[1], 0) + 1
                    dst.addfile(member, src.extractfile(member))
    return path


def test_image_folder_matches_archive(tmp_path, cifar_test):
    archive = _small_archive(tmp_path / "small.tar.gz", per_class=3)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "tree", filter="data")
    images, labels = data.read_image_folder(tmp_path / "tree", "test")
    first3 = torch.cat([torch.arange(c * 1000, c * 1000 + 3) for c in range(10)])
    assert torch.equal(torch.from_numpy(images), cifar_test[0][first3])
    assert labels.tolist() == sorted(list(range(10)) * 3)


def test_pickled_batches_are_read(tmp_path, cifar_test):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = cifar_test[0][::50], cifar_test[1][::50]  # 200 images, 20 per class
    chunks = np.array_split(np.arange(len(images)), 5)
    for i, chunk in enumerate(chunks, 1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": images[chunk].reshape(len(chunk), -1).numpy(), "labels": labels[chunk].tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": images.reshape(len(images), -1).numpy(), "labels": labels.tolist()}, f)
    os.environ.pop("CIFAR10_JPG")
    try:
        for split in ("train", "test"):
            got, got_labels, _ = load_cifar10(split, data_dir=tmp_path)
            assert torch.equal(got, images) and torch.equal(got_labels, labels)
            assert data.last_source[split].startswith("pickled")
    finally:
        os.environ["CIFAR10_JPG"] = str(ARCHIVE)


def test_beton_round_trip(tmp_path, cifar_test):
    """Write a small .beton from the real archive (in its own process, under a timeout: ffcv's writer hangs
    if a worker fails), then load it through load_cifar10, which must prefer it to the archive."""
    require_ffcv()
    script = ("import torch; from helpers.data import load_cifar10, write_beton\n"
              "for split in ('train', 'test'):\n"
              "    x, y, _ = load_cifar10(split, verbose=False)\n"
              f"    write_beton(x[::97], y[::97], r'{tmp_path}/' + split + '_32.beton')\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300, capture_output=True)
    threads = torch.get_num_threads()
    images, labels, _ = load_cifar10("test", data_dir=tmp_path)
    assert data.last_source["test"].startswith("beton")
    assert torch.equal(images, cifar_test[0][::97]) and torch.equal(labels, cifar_test[1][::97])
    assert len(images) == len(range(0, 10000, 97))  # the last partial batch is kept
    assert torch.get_num_threads() == threads  # ffcv's Loader sets its own count; ours is restored


def require_ffcv():
    try:
        with data.torch_threads_kept():
            import ffcv  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("ffcv is not installed (pip install -e .[ffcv]); CI installs it and runs this test")


def test_looking_for_ffcv_keeps_torch_threads(tmp_path):
    """Importing ffcv sets torch to one thread process-wide; finding sources (which imports it when a .beton file is
    there) must not. Without a .beton file ffcv is not imported at all: that takes seconds in every process."""
    require_ffcv()
    (tmp_path / "test_32.beton").write_bytes(b"")
    script = ("import sys, torch; torch.set_num_threads(2); from helpers.data import find_sources\n"
              "find_sources('test', sys.argv[1]); print('ffcv' in sys.modules, torch.get_num_threads())")
    for folder, imported in ((tmp_path, "True"), (tmp_path / "empty", "False")):
        out = subprocess.run([sys.executable, "-c", script, str(folder)], check=True, timeout=120,
                             capture_output=True, text=True)
        assert out.stdout.split()[-2:] == [imported, "2"]


def test_no_source_names_every_place(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR10_JPG")
    with pytest.raises(DataError) as err:
        load_cifar10("train", data_dir=tmp_path)
    message = str(err.value)
    for place in ("train_32.beton", "cifar-10-batches-py", "cifar10-jpg.tar.gz", "cifar10-jpg", "download=True"):
        assert place in message


def test_truncated_archive_is_an_error(tmp_path, monkeypatch):
    broken = tmp_path / "cut.tar.gz"
    broken.write_bytes(ARCHIVE.read_bytes()[: ARCHIVE.stat().st_size // 2])
    monkeypatch.setenv("CIFAR10_JPG", str(broken))
    with pytest.raises(DataError, match="cut.tar.gz.*truncated or corrupt"):
        load_cifar10("train", data_dir=tmp_path)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_incomplete_archive_is_an_error(tmp_path, monkeypatch):
    small = _small_archive(tmp_path / "small.tar.gz", per_class=5, skip_class="frog")
    monkeypatch.setenv("CIFAR10_JPG", str(small))
    with pytest.raises(DataError, match=r"small.tar.gz.*\[5, 5, 5, 5, 5, 5, 0, 5, 5, 5\]"):
        load_cifar10("test", data_dir=tmp_path)


def test_corrupt_cache_is_an_error(tmp_path, cifar_test, data_env):
    cache = next((data_env / "cache").glob("cifar10-test-*.npz"))
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / cache.name).write_bytes(cache.read_bytes()[:1000])
    with pytest.raises(DataError, match=f"{cache.name}.*Delete it"):
        load_cifar10("test", data_dir=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match="split='val'"):
        load_cifar10("val")


def test_augment_is_a_padded_crop_or_its_mirror(cifar_test):
    images = cifar_test[0][::1000]
    out = augment(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for original, crop in zip(padded, out):
        windows = original.unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4)  # (9, 9, 3, 32, 32)
        plain = (windows == crop).flatten(2).all(-1).any()
        mirrored = (windows.flip(-1) == crop).flatten(2).all(-1).any()
        assert plain or mirrored
        flips += bool(mirrored and not plain)
    assert 0 < flips < len(images)


def test_batches_cover_an_epoch_once(cifar_test):
    images, labels = cifar_test[0][::10], cifar_test[1][::10]
    seen = []
    for x, y in batches(images, labels, 128, augmented=False, seed=1):
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        seen.append(y)
    assert sum(len(y) for y in seen) == 1000 // 128 * 128  # drop_last
    first = next(batches(images, labels, 128, seed=1))[1]
    assert torch.equal(first, next(batches(images, labels, 128, seed=1))[1])
    assert not torch.equal(first, next(batches(images, labels, 128, seed=2))[1])


def test_shown_path_hides_the_machine(data_env, tmp_path):
    from helpers.paths import ROOT, shown_path
    assert shown_path(data_env / "results" / "cpu" / "x.csv") == "Data/results/cpu/x.csv"
    assert shown_path(ROOT / "book" / "cpu" / "a.ipynb") == "book/cpu/a.ipynb"
    assert shown_path(tmp_path / "elsewhere" / "cifar10-jpg.tar.gz") == "cifar10-jpg.tar.gz"


class _Payload:
    """An object whose unpickling would run code: here, create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_pickle_in_the_cache_is_refused_not_run(tmp_path):
    import torch

    from helpers.paths import cached
    marker, path = tmp_path / "code-ran", tmp_path / "result.pt"
    torch.save({"key": {"a": 1}, "value": _Payload(str(marker))}, path)
    with pytest.raises(RuntimeError, match="refused to load.*delete it to recompute"):
        cached(path, {"a": 1}, lambda: 42)
    assert not marker.exists()
    path.unlink()
    assert cached(path, {"a": 1}, lambda: 42) == 42 and cached(path, {"a": 1}, lambda: 0) == 42
