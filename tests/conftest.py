"""Shared fixtures: a private data folder for the whole test session, fed from the real CIFAR-10 archive.

The archive is ``$CIFAR10_JPG`` or ``../shared/data/cifar10-jpg.tar.gz`` next to the repository.
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = Path(os.environ.get("CIFAR10_JPG") or ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz")


@pytest.fixture(scope="session", autouse=True)
def data_env(tmp_path_factory):
    """Every test (and every notebook kernel they start) reads and writes a fresh data folder."""
    if not ARCHIVE.is_file():
        pytest.exit(f"CIFAR-10 archive {ARCHIVE} not found: set CIFAR10_JPG to cifar10-jpg.tar.gz", returncode=2)
    folder = tmp_path_factory.mktemp("Data")
    old = {k: os.environ.get(k) for k in ("INTERPRET_MLP_DATA", "CIFAR10_JPG")}
    os.environ["INTERPRET_MLP_DATA"] = str(folder)
    os.environ["CIFAR10_JPG"] = str(ARCHIVE)
    yield folder
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def cifar_test():
    from helpers.data import load_cifar10
    return load_cifar10("test")


@pytest.fixture(scope="session")
def cifar_train():
    from helpers.data import load_cifar10
    return load_cifar10("train")


@pytest.fixture
def vgg_with_learned_statistics():
    """A small VGG whose BatchNorms hold non-trivial statistics and affine parameters, as a trained one does."""
    import torch

    from helpers.models import VGG
    torch.manual_seed(0)
    vgg = VGG(width=0.125).eval()
    for m in vgg.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.3, 3.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.3, 0.3)
    return vgg
