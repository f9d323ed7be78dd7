"""The freeze file (``helpers.freeze``): built from the code, it pins the rules, the study's profile and the rules'
verdicts on synthetic tables, and a change to any of them after the freeze is found."""
import dataclasses
import json

import torch

from helpers import freeze, power, profiles, verdict

NOISE = dict(
    prediction2={"hidden": dataclasses.asdict(power.Noise()), "mid": dataclasses.asdict(power.Noise(ceiling=0.6))},
    prediction1=dict(cnn_null=0.05, mlp_null=0.03, cnn_gain=0.06, model_seeds=0.01, am_seeds=0.005, images=0.03,
                     per_cell=20),
    shift_invariance={"mid": dict(cnn_gain=0.1, cnn_seeds=0.01, mlp_seeds=0.01, blocks=0.01)})


def test_the_record_is_the_same_at_one_and_two_threads():
    """The synthetic verdicts a freeze pins do not move with the machine's thread count."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = freeze.synthetic_verdicts("smoke", NOISE, studies=3)
        torch.set_num_threads(2)
        two = freeze.synthetic_verdicts("smoke", NOISE, studies=3)
    finally:
        torch.set_num_threads(before)
    assert one == two
    decided = [v[0] for planted in one["prediction2"]["hidden"].values() for v in planted]
    assert set(decided) <= set(verdict.VERDICTS) and len(decided) == 6


def test_a_changed_rule_layer_or_behaviour_is_found(tmp_path, monkeypatch):
    path = tmp_path / "FREEZE.json"
    monkeypatch.setattr(freeze, "SYNTHETIC_STUDIES", 2)
    freeze.write("smoke", NOISE, path)
    assert freeze.mismatches(path) == []
    assert json.loads(path.read_text())["study"]["seeds"]["model"] == list(profiles.get("smoke").model_seeds)
    assert len(freeze.digest(path)) == 16 and freeze.digest(tmp_path / "none.json") is None

    monkeypatch.setitem(verdict.PREDICTION2, "min_position", 0.4)  # a threshold moved after the freeze
    found = freeze.mismatches(path)
    assert any(m.startswith("rules: prediction2.min_position") for m in found), found
    monkeypatch.setitem(verdict.PREDICTION2, "min_position", 0.5)

    table = profiles.layer_table("smoke")
    table["mid"]["mlp"] = dict(table["mid"]["mlp"], layer="elsewhere")  # a layer pair moved
    monkeypatch.setattr(profiles, "layer_table", lambda profile: table)
    assert any(m.startswith("study: layer_table.mid.mlp.layer") for m in freeze.mismatches(path))


def test_a_rule_whose_behaviour_changes_changes_the_synthetic_verdicts(tmp_path, monkeypatch):
    """The synthetic verdicts pin a rule's behaviour, not only its constants: a verdict function that decides
    otherwise at the same constants is found."""
    path = tmp_path / "FREEZE.json"
    monkeypatch.setattr(freeze, "SYNTHETIC_STUDIES", 2)
    freeze.write("smoke", NOISE, path)
    monkeypatch.setattr(verdict, "shift_invariance_verdict", lambda cnn_gain, position, rule=None: (
        verdict.INCONCLUSIVE, "always"))
    assert [m for m in freeze.mismatches(path) if m.startswith("synthetic_verdicts: shift_invariance")]


def test_after_the_freeze_the_rules_power_reads_the_frozen_noise(tmp_path, monkeypatch):
    """Once frozen, a page of the frozen profile simulates its rule's power at the exploratory noise in the file, never
    at its own run's; another profile's pages (and every page before the freeze) get None and use their own."""
    path = tmp_path / "FREEZE.json"
    assert freeze.frozen_noise("prediction1", "smoke", path=path) is None  # no freeze yet
    monkeypatch.setattr(freeze, "SYNTHETIC_STUDIES", 1)
    freeze.write("smoke", NOISE, path)
    assert freeze.frozen_noise("prediction2", "smoke", "mid", path) == power.Noise(ceiling=0.6)
    assert freeze.frozen_noise("prediction1", "smoke", path=path).per_cell == 20
    assert freeze.frozen_noise("shift_invariance", "smoke", "mid", path).cnn_gain == 0.1
    assert freeze.frozen_noise("shift_invariance", "smoke", "late", path) is None  # not frozen at that pair
    assert freeze.frozen_noise("prediction2", "smoke-matched", "hidden", path) is None
