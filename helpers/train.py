"""Training both model families on CIFAR-10 with the settings of a profile (``helpers.profiles``), and the
study's models: cached checkpoints, the published ones, and randomly initialized networks of either family.
"""
import json
import math
import time

import torch
import torch.nn.functional as F

from helpers import data as cifar
from helpers import freeze, profiles, store
from helpers.models import OFFICIAL, build_model, load_official, load_state_dict_checked, memory_format, read_checkpoint
from helpers.paths import atomic_path, shown_path, write_json
from helpers.progress import tqdm


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def config_for(family, profile):
    """The training configuration of ``family`` in ``profile`` as a plain dict (saved with the checkpoint)."""
    p = profiles.get(profile)
    if p.official:
        raise ValueError(f"profile={profile!r} uses the published checkpoints and is not trained here; train with "
                         f"one of {[n for n, q in profiles.PROFILES.items() if not q.official]}.")
    if p.matching:  # its models are its base profile's
        return config_for(family, p.matching.base)
    profiles.check_family(family, p.trained_models)
    return {"family": profiles.SCALE_MODELS.get(family, family), "profile": profile, **p.training[family].as_dict()}


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
    """SGD+Nesterov (CNN) or AdamW (MLP), with a one-cycle schedule: linear warm-up, cosine decay. Both fused (one
    pass over each parameter per step, the same update): on 2 cores the cpu MLP's step went from 94 to 83 ms."""
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9, nesterov=True,
                              weight_decay=config["weight_decay"], fused=True)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"], fused=True)
    warmup = max(1, total_steps // 10)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def epoch_paths(family, profile, seed):
    """Where training (family, profile, seed) keeps the model after every epoch (0: its initialization) and the
    state a rerun resumes from."""
    fields = dict(family=family, profile=profile, seed=seed)
    return (lambda epoch: store.path("epoch_checkpoint", epoch=epoch, **fields)), store.path("training_state", **fields)


def _load_state(path, config, seed):
    """The saved training state at ``path`` if it belongs to this configuration and seed, else None."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state["config"] == config and state["seed"] == seed else None


def _split(split, config, seed, verbose):
    """The images and labels of a CIFAR-10 split, or the configuration's seeded subset of them."""
    x, y, _ = cifar.load_cifar10(split, verbose=verbose)
    size = config[f"{split}_subset"]
    if size:
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size]
        x, y = x[pick], y[pick]
    return x, y


def train_model(config, seed=0, device=None, verbose=True, epochs_at=None):
    """Train a model from ``config`` (``config_for``); returns (model in eval mode, record dict).

    ``epochs_at``: (epoch -> path, resume-state path) from ``epoch_paths``. The model is then saved after every
    epoch (and before the first), each file written whole or not at all, and a rerun after an interruption resumes
    from the last finished epoch: the batches of an epoch depend only on the seed and the epoch, so the result is
    the uninterrupted run's."""
    device = device or default_device()
    torch.manual_seed(seed)
    (train_x, train_y), (test_x, test_y) = (_split(split, config, seed, verbose) for split in ("train", "test"))
    train_x, train_y = train_x.to(device), train_y.to(device)  # the whole split lives on the device
    model = build_model(config["family"], **config["arch"]).to(device)  # a CNN comes channels-last
    layout = memory_format(config["family"])
    steps_per_epoch = len(train_x) // config["batch_size"]
    opt, schedule = make_optimizer(model, config, config["epochs"] * steps_per_epoch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=(torch.device(device).type == "cuda"))
    epoch_path, state_path = epochs_at or (None, None)
    saved = _as_saved(config)
    state = _load_state(state_path, saved, seed) if epochs_at else None
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, first = state["history"], state["epoch"]
        if verbose:
            print(f"resuming after epoch {first} of {config['epochs']} ({shown_path(state_path)})")
    else:
        # epoch 0, the initialization: where the curves along training start (chance accuracy)
        history, first = [dict(epoch=0, train_loss=None, train_acc=None, test_acc=evaluate(model, test_x, test_y),
                               seconds=0.0)], 0
        if epochs_at:
            _save_epoch(epoch_path(0), model, saved, seed, history)
    start = time.time() - history[-1]["seconds"]
    for epoch in range(first, config["epochs"]):
        model.train()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        bar = tqdm(cifar.batches(train_x, train_y, config["batch_size"], seed=seed * 1000 + epoch,
                                 pad=config["crop"]),
                   total=steps_per_epoch, desc=f"{config['family']} epoch {epoch + 1}/{config['epochs']}",
                   disable=not verbose, leave=False)
        for step, (x, y) in enumerate(bar):
            x = x.contiguous(memory_format=layout)
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
        # After every epoch the whole test split: the competence match picks among these checkpoints by it.
        history.append(dict(epoch=epoch + 1, train_loss=total_loss.item() / steps_per_epoch,
                            train_acc=correct.item() / (steps_per_epoch * config["batch_size"]),
                            test_acc=evaluate(model, test_x, test_y), seconds=time.time() - start))
        if epochs_at:
            _save_epoch(epoch_path(epoch + 1), model, saved, seed, history)
            with atomic_path(state_path) as tmp:
                torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict(), schedule=schedule.state_dict(),
                                epoch=epoch + 1, history=history, config=saved, seed=seed), tmp)
        if verbose:
            print(f"epoch {epoch + 1}: loss {history[-1]['train_loss']:.3f}, test accuracy "
                  f"{history[-1]['test_acc']:.4f}")
    model.eval()
    record = dict(config=config, seed=seed, test_accuracy=history[-1]["test_acc"], history=history,
                  train_seconds=history[-1]["seconds"], device=str(device),
                  device_name=torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu",
                  torch_threads=torch.get_num_threads(), data_source=cifar.last_source.get("train"),
                  parameters=sum(p.numel() for p in model.parameters()), torch_version=torch.__version__,
                  freeze=freeze.digest())
    return model, record


def _as_saved(config):
    """``config`` as a saved record or checkpoint holds it (tuples become lists), for comparing with one."""
    return json.loads(json.dumps(config))


def _save_epoch(path, model, config, seed, history):
    with atomic_path(path) as tmp:
        torch.save(dict(model=model.state_dict(), config=config, seed=seed, history=history), tmp)


def train_or_load(family, profile="cpu", seed=0, device=None, verbose=True):
    """The checkpoint of (family, profile, seed) from ``Data/checkpoints/``, trained first if absent or stale (from
    its last epoch checkpoint, when an earlier run of the same configuration was interrupted)."""
    profiles.check_seed(seed)
    config = config_for(family, profile)
    ckpt, meta = checkpoint_paths(family, profile, seed)
    if ckpt.exists() and meta.exists():
        record = json.loads(meta.read_text())
        if record.get("config") == _as_saved(config):
            if verbose:
                print(f"reusing {shown_path(ckpt)} (test accuracy {record['test_accuracy']:.4f})")
            return load_trained(family, profile, seed, device), record
        if verbose:
            print(f"{shown_path(ckpt)} was trained with another configuration: training again.")
    epochs_at = epoch_paths(family, profile, seed)
    model, record = train_model(config, seed=seed, device=device, verbose=verbose, epochs_at=epochs_at)
    with atomic_path(ckpt) as tmp:
        torch.save(model.state_dict(), tmp)
    write_json(meta, record)
    epochs_at[1].unlink(missing_ok=True)  # finished: nothing to resume, and the optimizer state is the bulk
    return model, record


def competence_match(history, target):
    """The epoch whose test accuracy in ``history`` (a training record's, from epoch 0, the initialization) is
    nearest ``target``; of two equally near, the earlier."""
    if not 0 <= target <= 1:
        raise ValueError(f"target={target!r} is an accuracy: give a number between 0 and 1.")
    if not history:
        raise ValueError("history is empty: the training record has no epochs to match.")
    accuracies = [(abs(h["test_acc"] - target), h["epoch"]) for h in history]
    return min(accuracies)[1]


def load_epoch(family, profile, seed, epoch, device=None):
    """The model (family, profile, seed) as it was after ``epoch`` epochs of training (0: its initialization)."""
    epoch_path, _ = epoch_paths(family, profile, seed)
    path = epoch_path(epoch)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: train the model with this version of helpers.train first "
                                f"({store.run_first('checkpoint', family=family, profile=profile, seed=seed)}).")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved["config"] != _as_saved(config_for(family, profile)) or saved["seed"] != seed:
        raise ValueError(f"{path} was trained with another configuration than profile {profile!r} has now; train "
                         f"again ({store.run_first('checkpoint', family=family, profile=profile, seed=seed)}).")
    model = build_model(saved["config"]["family"], **saved["config"]["arch"])
    return load_state_dict_checked(model, saved["model"], path).to(device or default_device()).eval()


def training_record(family, profile, seed):
    """The JSON record ``00_train`` wrote for (family, profile, seed)."""
    return json.loads(store.require("training_record", family=family, profile=profile, seed=seed).read_text())


def matched_epoch(family, profile, seed):
    """The epoch of ``family`` (model seed ``seed``) that competence-matched ``profile`` takes: the one whose test
    accuracy is nearest its target family's final accuracy, same seed (``competence_match``)."""
    m = profiles.get(profile).matching
    target = training_record(m.target, m.base, seed)["test_accuracy"]
    return competence_match(training_record(family, m.base, seed)["history"], target)


def matching_table(profile):
    """Per matched family and model seed: the epoch taken, its test accuracy, the target's and the final one."""
    import pandas as pd
    m = profiles.get(profile).matching
    rows = []
    for family in m.families:
        for seed in profiles.get(profile).model_seeds:
            history = training_record(family, m.base, seed)["history"]
            target = training_record(m.target, m.base, seed)["test_accuracy"]
            epoch = competence_match(history, target)  # matched_epoch, from the records read here
            rows.append(dict(model=profiles.FAMILY[family].architecture, model_seed=seed, epoch=epoch,
                             epochs=history[-1]["epoch"], accuracy=history[epoch]["test_acc"], target=target,
                             final_accuracy=history[-1]["test_acc"]))
    return pd.DataFrame(rows)


def load_trained(family, profile="cpu", seed=0, device=None):
    """A model for the study: a checkpoint trained by ``00_train``, a profile's published weights, or in a
    competence-matched profile the epoch checkpoint of ``matched_epoch``."""
    device = device or default_device()
    p = profiles.get(profile)
    profiles.check_family(family, p.trained_models or profiles.FAMILIES)
    if p.official:
        return load_official(profiles.FAMILY[family].official).to(device)
    if p.matching:
        if family in p.matching.families:
            return load_epoch(family, p.matching.base, seed, matched_epoch(family, profile, seed), device)
        profile = p.matching.base
    config = config_for(family, profile)
    ckpt = store.require("checkpoint", family=family, profile=profile, seed=seed)
    model = build_model(config["family"], **config["arch"])
    return load_state_dict_checked(model, read_checkpoint(ckpt), ckpt).to(device).eval()


def random_model(family, profile="cpu", seed=0, device=None):
    """A randomly initialized network with the architecture of (family, profile): a baseline for every method."""
    p = profiles.get(profile)
    profiles.check_family(family, p.trained_models or profiles.FAMILIES)
    arch = OFFICIAL[profiles.FAMILY[family].official]["arch"] if p.official else config_for(family, profile)["arch"]
    torch.manual_seed(10_000 + seed)
    return build_model(profiles.SCALE_MODELS.get(family, family), **arch).to(device or default_device()).eval()


# ----------------------------------------------------------------------------- the page: 00_train

def training_summary(family, profile, seed, record):
    """What was trained, in the words ``00_train`` prints: architecture, recipe, data and accuracy."""
    cfg = record["config"]
    return "\n".join([
        f"{profiles.FAMILY[family].architecture} ({family}), profile {profile!r}, seed {seed}",
        f"architecture: {cfg['arch']}, {record['parameters']:,} parameters",
        f"training: {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}, "
        f"weight decay {cfg['weight_decay']}, label smoothing {cfg['label_smoothing']}, "
        f"training images: {cfg['train_subset'] or 'all 50,000'}, augmentation: flips"
        + (f" and random crops of {cfg['crop']} px" if cfg.get("crop") else ""),
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
    ax.set(ylabel="test accuracy", ylim=(0, 1), title=f"{profiles.FAMILY[family].architecture}, profile {profile}")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig
