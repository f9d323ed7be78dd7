"""Training: smoke runs learn, checkpoints are reused, bad settings fail clearly, seeds reproduce."""
import json

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
