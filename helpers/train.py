"""Training both model families on CIFAR-10, with named profiles and cached checkpoints.

A profile is a named set of plain values (model size, epochs, batch size, optimizer):
  smoke  seconds, for tests (a subset of the training set);
  cpu    small members of both families, about 4.5 minutes each on 2 CPU cores (the default; two seeds each);
  paper  the full VGG13_bn and B-12/Wi-1024 (resolution 32), for a GPU.
``official`` is not trained: it loads the published checkpoints (see ``helpers.models.load_official``).
"""
import json
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from helpers import data as cifar
from helpers.models import OFFICIAL, build_model, load_official, load_state_dict_checked, read_checkpoint
from helpers.paths import atomic_path, data_dir, shown_path, write_json

PROFILES = {
    "smoke": {
        "cnn": dict(arch=dict(width=1 / 8), epochs=3, batch_size=128, optimizer="sgd", lr=0.1,
                    weight_decay=5e-4, label_smoothing=0.1, train_subset=5000, test_subset=2000),
        "mlp": dict(arch=dict(depth=2, width=64, expansion=4, resolution=32), epochs=2, batch_size=128,
                    optimizer="adamw", lr=2e-3, weight_decay=0.05, label_smoothing=0.1, train_subset=5000,
                    test_subset=2000),
    },
    # Both hidden layers are 512 wide (SAEs of 1,536 features each). Sized so that two seeds of each family train in
    # about 16 minutes on 2 cores: VGG13_bn at 1/8 width (channels-last: 0.12 s per step here, 1/4 width 0.37 s) and
    # 4 blocks (0.13 s per step; 6 blocks 0.18 s); about 33 s per epoch for either. 7 epochs, not 12, to fit the whole
    # study in 45 minutes: at 12 the two seeds reached 76.2% (CNN) and 59.7-59.8% (MLP), at 8 72.3-73.3% and 57.2-57.5%
    # (and 8 took 291 s per CNN on a 2-core AMD EPYC, 9% more than on the machine of the 72% run).
    "cpu": {
        "cnn": dict(arch=dict(width=1 / 8), epochs=7, batch_size=256, optimizer="sgd", lr=0.1,
                    weight_decay=5e-4, label_smoothing=0.1, train_subset=None, test_subset=None),
        "mlp": dict(arch=dict(depth=4, width=512, expansion=4, resolution=32), epochs=7, batch_size=256,
                    optimizer="adamw", lr=1e-3, weight_decay=0.05, label_smoothing=0.1, train_subset=None,
                    test_subset=None),
    },
    "paper": {
        "cnn": dict(arch=dict(width=1.0), epochs=40, batch_size=256, optimizer="sgd", lr=0.1,
                    weight_decay=5e-4, label_smoothing=0.1, train_subset=None, test_subset=None),
        "mlp": dict(arch=dict(depth=12, width=1024, expansion=4, resolution=32), epochs=100, batch_size=1024,
                    optimizer="adamw", lr=1e-3, weight_decay=0.05, label_smoothing=0.1, train_subset=None,
                    test_subset=None),
    },
}
OFFICIAL_NAMES = {"cnn": "vgg13_bn", "mlp": "B_12-Wi_1024"}
# What each profile's models are, in the words the book's verdicts are captioned with.
PROFILE_MODELS = {
    "smoke": "tiny test models trained for seconds",
    "cpu": "small models trained on 2 CPU cores: VGG13_bn at 1/8 width and a 4-block, width-512 bottleneck MLP, "
           "two training seeds each",
    "paper": "VGG13_bn and B-12/Wi-1024 (resolution 32) trained here at full size",
    "official": "the published VGG13_bn and B-12/Wi-1024 (ImageNet-21k pre-trained) checkpoints",
}
FAMILY_NAMES = {"cnn": "VGG13_bn", "mlp": "BottleneckMLP"}


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def config_for(family, profile):
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {tuple(PROFILES)}; use 'smoke' (tests), "
                         "'cpu' (small models, the default) or 'paper' (full size, GPU).")
    if family not in PROFILES[profile]:
        raise ValueError(f"model={family!r} is not one of ('cnn', 'mlp').")
    return {"family": family, "profile": profile, **PROFILES[profile][family]}


def checkpoint_paths(family, profile, seed):
    stem = data_dir() / "checkpoints" / f"{family}_{profile}_seed{seed}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


@torch.no_grad()
def predictions(model, images, batch_size=1000):
    """The predicted class of every uint8 image."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(cifar.to_float(images[i:i + batch_size].to(device))).argmax(1).cpu()
           for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def evaluate(model, images, labels, batch_size=1000):
    """Top-1 accuracy of ``model`` on uint8 images."""
    return (predictions(model, images, batch_size) == labels.cpu()).float().mean().item()


def make_optimizer(model, config, total_steps):
    """SGD+Nesterov (CNN) or AdamW (MLP), with a one-cycle schedule: linear warm-up, cosine decay."""
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, nesterov=True,
                              weight_decay=config["weight_decay"])
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    warmup = max(1, total_steps // 10)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_model(config, seed=0, device=None, verbose=True):
    """Train a model from ``config`` (see PROFILES); returns (model in eval mode, record dict)."""
    device = device or default_device()
    torch.manual_seed(seed)
    train_x, train_y, _ = cifar.load_cifar10("train", verbose=verbose)
    test_x, test_y, _ = cifar.load_cifar10("test", verbose=verbose)
    if config["train_subset"]:
        pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:config["train_subset"]]
        train_x, train_y = train_x[pick], train_y[pick]
    if config["test_subset"]:
        pick = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed))[:config["test_subset"]]
        test_x, test_y = test_x[pick], test_y[pick]
    train_x, train_y = train_x.to(device), train_y.to(device)  # the whole split lives on the device

    model = build_model(config["family"], **config["arch"]).to(device)  # a CNN comes channels-last
    memory_format = torch.channels_last if config["family"] == "cnn" else torch.contiguous_format
    monitor = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed))[:max(1, len(test_x) // 5)]
    steps_per_epoch = len(train_x) // config["batch_size"]
    opt, schedule = make_optimizer(model, config, config["epochs"] * steps_per_epoch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=(torch.device(device).type == "cuda"))
    history, start = [], time.time()
    for epoch in range(config["epochs"]):
        model.train()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        bar = tqdm(cifar.batches(train_x, train_y, config["batch_size"], seed=seed * 1000 + epoch),
                   total=steps_per_epoch, desc=f"{config['family']} epoch {epoch + 1}/{config['epochs']}",
                   disable=not verbose, leave=False)
        for step, (x, y) in enumerate(bar):
            x = x.contiguous(memory_format=memory_format)
            with autocast:
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config["label_smoothing"])
            if not torch.isfinite(loss) or loss.item() > 100:
                raise FloatingPointError(
                    f"training diverged: loss={loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr={config['lr']}). Lower the learning rate in the profile and train again.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total_loss += loss.detach()
            correct += (logits.argmax(1) == y).sum()
        last = epoch + 1 == config["epochs"]
        # Between epochs a fixed fifth of the test split tracks progress; the model's accuracy is the whole split's.
        test_acc = evaluate(model, test_x, test_y) if last else evaluate(model, test_x[monitor], test_y[monitor])
        history.append(dict(epoch=epoch + 1, train_loss=total_loss.item() / steps_per_epoch,
                            train_acc=correct.item() / (steps_per_epoch * config["batch_size"]),
                            test_acc=test_acc, seconds=time.time() - start))
        if verbose:
            print(f"epoch {epoch + 1}: loss {history[-1]['train_loss']:.3f}, test accuracy {test_acc:.4f}")
    model.eval()
    record = dict(config=config, seed=seed, test_accuracy=history[-1]["test_acc"], history=history,
                  train_seconds=time.time() - start, device=str(device),
                  device_name=torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu",
                  torch_threads=torch.get_num_threads(), data_source=cifar.last_source.get("train"),
                  parameters=sum(p.numel() for p in model.parameters()), torch_version=torch.__version__)
    return model, record


def train_or_load(family, profile="cpu", seed=0, device=None, verbose=True):
    """The checkpoint of (family, profile, seed) from ``Data/checkpoints/``, trained first if absent or stale."""
    config = config_for(family, profile)
    ckpt, meta = checkpoint_paths(family, profile, seed)
    if ckpt.exists() and meta.exists():
        record = json.loads(meta.read_text())
        if record.get("config") == config:
            if verbose:
                print(f"reusing {shown_path(ckpt)} (test accuracy {record['test_accuracy']:.4f})")
            return load_trained(family, profile, seed, device), record
        if verbose:
            print(f"{shown_path(ckpt)} was trained with another configuration: training again.")
    model, record = train_model(config, seed=seed, device=device, verbose=verbose)
    with atomic_path(ckpt) as tmp:
        torch.save(model.state_dict(), tmp)
    write_json(meta, record)
    return model, record


def load_trained(family, profile="cpu", seed=0, device=None):
    """A model for the study: a checkpoint trained by ``00_train``, or ``profile='official'`` weights."""
    device = device or default_device()
    if profile == "official":
        if family not in OFFICIAL_NAMES:
            raise ValueError(f"model={family!r} is not one of {tuple(OFFICIAL_NAMES)}.")
        return load_official(OFFICIAL_NAMES[family]).to(device)
    config = config_for(family, profile)
    ckpt, _ = checkpoint_paths(family, profile, seed)
    if not ckpt.exists():
        raise FileNotFoundError(
            f"no trained {family} model for profile={profile!r}, seed={seed} ({ckpt} is missing). Run first: "
            f"papermill notebooks/00_train.ipynb out.ipynb -p model {family} -p profile {profile} -p seed {seed}")
    model = build_model(family, **config["arch"])
    return load_state_dict_checked(model, read_checkpoint(ckpt), ckpt).to(device).eval()


def model_id(family, profile="cpu", seed=0):
    """A string that changes whenever the model's weights do (for cache keys)."""
    if profile == "official":
        path = data_dir() / OFFICIAL[OFFICIAL_NAMES[family]]["file"]
    else:
        path = checkpoint_paths(family, profile, seed)[0]
    return f"{path.name}:{path.stat().st_mtime_ns if path.exists() else 'missing'}"


def random_model(family, profile="cpu", seed=0, device=None):
    """A randomly initialized network with the architecture of (family, profile): a baseline for every method."""
    arch = OFFICIAL[OFFICIAL_NAMES[family]]["arch"] if profile == "official" else config_for(family, profile)["arch"]
    torch.manual_seed(10_000 + seed)
    return build_model(family, **arch).to(device or default_device()).eval()
