"""Training both model families on CIFAR-10 with the settings of a profile (``helpers.profiles``), and the
study's models: cached checkpoints, the published ones, and randomly initialized networks of either family.
"""
import json
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from helpers import data as cifar
from helpers import profiles, store
from helpers.models import OFFICIAL, build_model, load_official, load_state_dict_checked, read_checkpoint
from helpers.paths import atomic_path, shown_path, write_json

OFFICIAL_NAMES = {"cnn": "vgg13_bn", "mlp": "B_12-Wi_1024"}


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def config_for(family, profile):
    """The training configuration of ``family`` in ``profile`` as a plain dict (saved with the checkpoint)."""
    p = profiles.get(profile)
    if p.official:
        raise ValueError(f"profile={profile!r} uses the published checkpoints and is not trained here; train with "
                         f"one of {[n for n, q in profiles.PROFILES.items() if not q.official]}.")
    profiles.check_family(family, p.families)
    return {"family": family, "profile": profile, **p.training[family].as_dict()}


def checkpoint_paths(family, profile, seed):
    fields = dict(family=family, profile=profile, seed=seed)
    return store.path("checkpoint", **fields), store.path("training_record", **fields)


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
    """Train a model from ``config`` (``config_for``); returns (model in eval mode, record dict)."""
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
    profiles.check_seed(seed)
    config = config_for(family, profile)
    ckpt, meta = checkpoint_paths(family, profile, seed)
    if ckpt.exists() and meta.exists():
        record = json.loads(meta.read_text())
        if record.get("config") == json.loads(json.dumps(config)):  # as saved: tuples become lists
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
    """A model for the study: a checkpoint trained by ``00_train``, or a profile's published weights."""
    device = device or default_device()
    profiles.check_family(family, profiles.get(profile).families)
    if profiles.get(profile).official:
        return load_official(OFFICIAL_NAMES[family]).to(device)
    config = config_for(family, profile)
    ckpt = store.require("checkpoint", family=family, profile=profile, seed=seed)
    model = build_model(family, **config["arch"])
    return load_state_dict_checked(model, read_checkpoint(ckpt), ckpt).to(device).eval()


def random_model(family, profile="cpu", seed=0, device=None):
    """A randomly initialized network with the architecture of (family, profile): a baseline for every method."""
    profiles.check_family(family, profiles.get(profile).families)
    official = profiles.get(profile).official
    arch = OFFICIAL[OFFICIAL_NAMES[family]]["arch"] if official else config_for(family, profile)["arch"]
    torch.manual_seed(10_000 + seed)
    return build_model(family, **arch).to(device or default_device()).eval()


# ----------------------------------------------------------------------------- the page: 00_train

def training_summary(family, profile, seed, record):
    """What was trained, in the words ``00_train`` prints: architecture, recipe, data and accuracy."""
    cfg = record["config"]
    return "\n".join([
        f"{profiles.FAMILY_NAMES[family]} ({family}), profile {profile!r}, seed {seed}",
        f"architecture: {cfg['arch']}, {record['parameters']:,} parameters",
        f"training: {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}, "
        f"weight decay {cfg['weight_decay']}, label smoothing {cfg['label_smoothing']}, "
        f"training images: {cfg['train_subset'] or 'all 50,000'}, crop+flip augmentation",
        f"data: {record['data_source']}",
        f"test accuracy {record['test_accuracy']:.4f} on {cfg['test_subset'] or 'all 10,000'} test images, "
        f"after {record['train_seconds'] / 60:.1f} minutes on {record['device_name']} "
        f"({record['torch_threads']} threads)"])


def per_class_figure(net, family, profile):
    """Test accuracy per class."""
    import matplotlib.pyplot as plt
    test_x, test_y, _ = cifar.load_cifar10("test")
    per_class = [evaluate(net, test_x[test_y == c], test_y[test_y == c]) for c in range(len(cifar.CLASSES))]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(cifar.CLASSES, per_class)
    ax.set(ylabel="test accuracy", ylim=(0, 1), title=f"{profiles.FAMILY_NAMES[family]}, profile {profile}")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig
