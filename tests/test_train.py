"""Training: smoke runs learn, checkpoints are reused, bad settings fail clearly, seeds reproduce."""
import json
from pathlib import Path

import pytest
import torch

from helpers import params
from helpers.train import checkpoint_paths, config_for, load_trained, train_model, train_or_load


@pytest.mark.parametrize("family,floor", [("cnn", 0.2), ("mlp", 0.25)])
def test_smoke_training_beats_chance_and_is_reused(family, floor):
    model, record = train_or_load(family, "smoke", seed=0, verbose=False)
    assert record["test_accuracy"] > floor  # chance is 0.10
    ckpt, meta = checkpoint_paths(family, "smoke", 0)
    assert json.loads(meta.read_text())["test_accuracy"] == record["test_accuracy"]
    before = ckpt.stat().st_mtime_ns
    again, record_again = train_or_load(family, "smoke", seed=0, verbose=False)
    assert ckpt.stat().st_mtime_ns == before and record_again == record
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_same_seed_same_numbers():
    config = dict(config_for("mlp", "smoke"), epochs=1, train_subset=1000, test_subset=500)
    first = train_model(config, seed=3, verbose=False)[1]["history"]
    second = train_model(config, seed=3, verbose=False)[1]["history"]
    other = train_model(config, seed=4, verbose=False)[1]["history"]
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(first) == strip(second) and strip(first) != strip(other)


def test_divergence_stops_with_a_message():
    config = dict(config_for("mlp", "smoke"), lr=1e9, epochs=1, train_subset=1000, test_subset=100)
    with pytest.raises(FloatingPointError, match="lr=1000000000.0"):
        train_model(config, verbose=False)


def test_bad_profile_and_missing_checkpoint():
    with pytest.raises(ValueError, match="profile='gpu'"):
        config_for("cnn", "gpu")
    with pytest.raises(FileNotFoundError, match="00_train.ipynb .* -p model mlp -p profile cpu -p seed 7"):
        load_trained("mlp", "cpu", seed=7)


def test_param_checks():
    assert params.check("lr", 1, float) == 1.0
    with pytest.raises(ValueError, match=r"parameter steps='ten' \(str\) must be an integer"):
        params.check("steps", "ten", int)
    with pytest.raises(ValueError, match="parameter model='vit' is not one of"):
        params.check("model", "vit", str, ["cnn", "mlp"])
    with pytest.raises(ValueError, match="must be an integer"):
        params.check("seed", True, int)
    with pytest.raises(ValueError, match="at least 0"):
        params.check("seed", -1, int, low=0)


def _tiny(family="mlp", epochs=3):
    return dict(config_for(family, "smoke"), epochs=epochs, train_subset=1000, test_subset=300)


def test_epoch_checkpoints_are_atomic_and_a_rerun_resumes(tmp_path, monkeypatch):
    """Each epoch's model is saved whole; an interrupted run resumes after its last finished epoch and ends where
    the uninterrupted run ends, without training the finished epochs again."""
    from helpers import data as cifar
    from helpers import train
    config = _tiny()
    epochs_at = (lambda e: tmp_path / "run" / f"epoch{e}.pt"), tmp_path / "run" / "resume.pt"
    whole, whole_record = train_model(config, seed=5, verbose=False)

    batches, seen = cifar.batches, []

    def interrupted(*args, seed, **kwargs):
        seen.append(seed % 1000)
        if seed % 1000 == 2:  # the third epoch
            raise KeyboardInterrupt
        return batches(*args, seed=seed, **kwargs)
    monkeypatch.setattr(cifar, "batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_model(config, seed=5, verbose=False, epochs_at=epochs_at)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["epoch0.pt", "epoch1.pt", "epoch2.pt",
                                                                     "resume.pt"]  # no temporary file left
    seen.clear()
    monkeypatch.setattr(cifar, "batches", lambda *a, seed, **k: (seen.append(seed % 1000), batches(*a, seed=seed,
                                                                                                    **k))[1])
    resumed, record = train_model(config, seed=5, verbose=False, epochs_at=epochs_at)
    assert seen == [2]  # only the unfinished epoch ran
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(record["history"]) == strip(whole_record["history"])
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(resumed(x), whole(x), atol=1e-5)
    saved = torch.load(tmp_path / "run" / "epoch3.pt", weights_only=True)
    assert saved["history"][-1]["epoch"] == 3 and saved["config"]["epochs"] == 3

    def broken_save(obj, path):  # a write that dies half-way leaves no file under the real name
        Path(path).write_bytes(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(train.torch, "save", broken_save)
    with pytest.raises(OSError):
        train._save_epoch(tmp_path / "other" / "epoch0.pt", resumed, {}, 0, [])
    assert list((tmp_path / "other").iterdir()) == []


def test_competence_match_picks_the_nearest_epoch():
    from helpers.train import competence_match
    history = [dict(epoch=e, test_acc=a) for e, a in enumerate([0.1, 0.45, 0.55, 0.61, 0.70])]
    assert competence_match(history, 0.57) == 2
    assert competence_match(history, 0.60) == 3
    assert competence_match(history, 0.95) == 4 and competence_match(history, 0.0) == 0
    assert competence_match(history, 0.50) == 1  # equally near 0.45 and 0.55: the earlier
    with pytest.raises(ValueError, match="between 0 and 1"):
        competence_match(history, 57)


def test_matched_profile_loads_the_matched_epoch_and_reuses_the_rest():
    """In a competence-matched profile the CNNs are their epoch checkpoints nearest the MLP's accuracy, the MLP is
    the base profile's own, and the MLP's results files are the base profile's."""
    from helpers import store
    from helpers.train import load_epoch, matched_epoch, matching_table, training_record
    for family in ("cnn", "mlp", "resnet"):
        for seed in (0, 1):
            train_or_load(family, "smoke", seed=seed, verbose=False)
    target = training_record("mlp", "smoke", 0)["test_accuracy"]
    history = training_record("cnn", "smoke", 0)["history"]
    epoch = matched_epoch("cnn", "smoke-matched", 0)
    assert abs(history[epoch]["test_acc"] - target) == min(abs(h["test_acc"] - target) for h in history)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_trained("cnn", "smoke-matched", 0)(x), load_epoch("cnn", "smoke", 0, epoch)(x))
        assert torch.equal(load_trained("mlp", "smoke-matched", 0)(x), load_trained("mlp", "smoke", 0)(x))
    t = matching_table("smoke-matched")
    assert list(t.epoch[t.model_seed == 0])[0] == epoch
    assert store.path("sae_summary", profile="smoke-matched", layer="hidden", family="mlp") == \
        store.path("sae_summary", profile="smoke", layer="hidden", family="mlp")
    assert "smoke-matched" in str(store.path("sae_summary", profile="smoke-matched", layer="hidden", family="cnn"))
    # the matched CNN's randomly initialized network is the base's, and so is the SAE on it
    from helpers.sae_study import _fields
    from helpers.train import random_model
    from helpers.units import SAESpec
    with torch.no_grad():
        assert torch.equal(random_model("cnn", "smoke-matched")(x), random_model("cnn", "smoke")(x))
    random_sae, trained_sae = SAESpec("cnn", "random-init", 0, "l1"), SAESpec("cnn", "trained", 0, "l1")
    assert store.path("sae", **_fields("smoke-matched", "hidden", random_sae)) == \
        store.path("sae", **_fields("smoke", "hidden", random_sae))
    assert store.path("sae", **_fields("smoke-matched", "hidden", trained_sae)) != \
        store.path("sae", **_fields("smoke", "hidden", trained_sae))
    from helpers.am_study import am_where
    run = dict(family="cnn", setting="plain", model_seed=0, am_seed=0)
    assert store.path("am_run", **am_where("smoke-matched", network="random-init", **run)) == \
        store.path("am_run", **am_where("smoke", network="random-init", **run))
    assert store.path("am_run", **am_where("smoke-matched", network="trained", **run)) != \
        store.path("am_run", **am_where("smoke", network="trained", **run))

