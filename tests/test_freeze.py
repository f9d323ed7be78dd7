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
    """Once frozen, a page of the frozen profile (or of its competence-matched profile, at that profile's own frozen
    noise) simulates its rule's power at the exploratory noise in the file, never at its own run's; another
    profile's pages (and every page before the freeze) get None and use their own."""
    path = tmp_path / "FREEZE.json"
    assert freeze.frozen_noise("prediction1", "smoke", path=path) is None  # no freeze yet
    assert freeze.power_noise("prediction1", "smoke", lambda: "own", path=path) == "own"  # before it, the run's own
    monkeypatch.setattr(freeze, "SYNTHETIC_STUDIES", 1)
    freeze.write("smoke", NOISE, path)
    assert freeze.power_noise("prediction2", "smoke", lambda: "own", "mid", path) == power.Noise(ceiling=0.6)
    assert freeze.power_noise("shift_invariance", "smoke", lambda: "own", "late", path) is None  # never its own
    assert freeze.power_noise("prediction2", "cpu", lambda: "own", "mid", path) == "own"  # another profile's page
    assert freeze.frozen_noise("prediction2", "smoke", "mid", path) == power.Noise(ceiling=0.6)
    assert freeze.frozen_noise("prediction1", "smoke", path=path).per_cell == 20
    assert freeze.frozen_noise("shift_invariance", "smoke", "mid", path).cnn_gain == 0.1
    assert freeze.frozen_noise("shift_invariance", "smoke", "late", path) is None  # not frozen at that pair
    assert freeze.frozen_noise("prediction2", "smoke-matched", "hidden", path) is None  # no matched noise frozen
    assert freeze.is_frozen("smoke-matched", path) and not freeze.is_frozen("cpu", path)
    matched = dict(NOISE, matched={"smoke-matched": dict(NOISE, prediction2={"hidden": dict(
        dataclasses.asdict(power.Noise()), null=0.2)})})
    freeze.write("smoke", matched, path)
    assert freeze.frozen_noise("prediction2", "smoke-matched", "hidden", path).null == 0.2
    assert freeze.frozen_noise("prediction2", "smoke", "hidden", path).null == power.Noise().null


def test_the_noise_to_freeze_is_read_from_an_exploratory_runs_results(tmp_path):
    """``exploratory_noise`` reads what the pages recorded: Prediction 2's per layer where a comparison recorded one,
    Prediction 1's from the AM power table, shift invariance's per layer pair from the invariance table (in a copy
    of a run's files, here synthetic); a folder without them says which file is missing and what to pass."""
    import pandas as pd
    import pytest
    with pytest.raises(FileNotFoundError, match="lacks am_power.csv, shift_invariance.csv: point --results"):
        freeze.exploratory_noise([tmp_path], "smoke")
    (tmp_path / "conclusions_hidden.json").write_text(json.dumps({"noise": NOISE["prediction2"]["hidden"]}))
    (tmp_path / "conclusions_mid.json").write_text(json.dumps({"noise": None}))  # no SAEs there: no noise
    pd.DataFrame([{**{f"noise_{k}": v for k, v in NOISE["prediction1"].items()}, "model_seeds": 2}]).to_csv(
        tmp_path / "am_power.csv", index=False)
    table = profiles.layer_table("smoke")
    rows = [dict(family=f, model_seed=s, network=n, layer=table[layer][f]["layer"], shift=shift, block=b,
                 invariance=(0.5 if n == "trained" else 0.2) + 0.01 * s + 0.001 * b + (0.1 if f == "cnn" else 0))
            for f in ("cnn", "mlp") for s in (0, 1) for n in ("trained", "random-init") for layer in table
            for shift in (1, 2, 4) for b in range(3)]
    pd.DataFrame(rows).to_csv(tmp_path / "shift_invariance.csv", index=False)
    got = freeze.exploratory_noise([tmp_path], "smoke")
    assert got["prediction2"] == {"hidden": NOISE["prediction2"]["hidden"]}
    assert got["prediction1"] == NOISE["prediction1"] and isinstance(got["prediction1"]["per_cell"], int)
    assert set(got["shift_invariance"]) == set(profiles.STUDY_LAYERS) and got["sources"] == [str(tmp_path)]
    assert power.GainNoise(**got["shift_invariance"]["hidden"]).cnn_gain > 0
    # a second, noisier run: its spreads are taken, the first run's levels kept
    import shutil
    other = tmp_path / "other"
    shutil.copytree(tmp_path, other, ignore=shutil.ignore_patterns("other"))
    noisier = dict(NOISE["prediction2"]["hidden"], between_seeds=0.2, null=0.9)
    (other / "conclusions_hidden.json").write_text(json.dumps({"noise": noisier}))
    both = freeze.exploratory_noise([tmp_path, other], "smoke")
    assert both["prediction2"]["hidden"]["between_seeds"] == 0.2
    assert both["prediction2"]["hidden"]["null"] == NOISE["prediction2"]["hidden"]["null"]
    (other / "conclusions_hidden.json").write_text(json.dumps({"profile": "cpu", "noise": noisier}))
    with pytest.raises(ValueError, match="is profile 'cpu'.s, not 'smoke'"):
        freeze.exploratory_noise([tmp_path, other], "smoke")


def test_synthetic_bounds_may_move_in_their_last_digit_but_a_verdict_may_not():
    """Another CPU may round a synthetic bound one unit differently; a verdict or a larger move is a mismatch."""
    frozen = {"p": [["supported", 0.5123, 0.9001]]}
    assert freeze._first_difference(frozen, {"p": [["supported", 0.5124, 0.9001]]}, freeze.SYNTHETIC_TOLERANCE) is None
    assert freeze._first_difference(frozen, {"p": [["inconclusive", 0.5123, 0.9001]]},
                                    freeze.SYNTHETIC_TOLERANCE) == "p[0][0]: frozen 'supported', now 'inconclusive'"
    assert freeze._first_difference(frozen, {"p": [["supported", 0.52, 0.9001]]}, freeze.SYNTHETIC_TOLERANCE)
    assert freeze._first_difference({"min_position": 0.5}, {"min_position": 0.5001}) is not None  # constants: exact
    assert freeze._first_difference({"flag": True}, {"flag": 1}) == "flag: frozen True, now 1"  # True == 1 in Python
    assert freeze._first_difference({"x": float("nan")}, {"x": float("nan")}) is None


def test_the_cpu_study_runs_confirmatory_seeds_only_under_a_freeze_that_matches_the_code():
    """Before the freeze the cpu study runs the exploratory seeds; from the freeze's commit on, the confirmatory ones,
    and ``FREEZE.json`` still describes the code: no rule constant, primary, layer pair, seed list, setting or rule
    behaviour (the synthetic verdicts) has moved since."""
    if not freeze.FREEZE_PATH.exists():
        assert profiles.CPU_SEEDS is profiles.USED_SEEDS
        return
    assert profiles.CPU_SEEDS is profiles.CONFIRMATORY_SEEDS
    assert json.loads(freeze.FREEZE_PATH.read_text())["study"]["profile"] == "cpu"
    assert freeze.mismatches() == []


def test_the_confirmatory_seeds_run_only_under_a_freeze_that_matches_the_code(tmp_path, monkeypatch):
    """``guard``: a profile with confirmatory model seeds is refused without a freeze of it, or once the code has moved
    from the file; a profile of other seeds always runs."""
    import pytest
    freeze.guard("smoke", tmp_path / "none.json")  # not confirmatory seeds: no freeze needed
    monkeypatch.setattr(freeze, "SYNTHETIC_STUDIES", 1)
    smoke = profiles.get("smoke")
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(
        smoke, model_seeds=profiles.CONFIRMATORY_SEEDS["model"][:2]))
    with pytest.raises(SystemExit, match="runs the confirmatory model seeds \\[10, 11\\], but none.json does not"):
        freeze.guard("smoke", tmp_path / "none.json")
    path = tmp_path / "FREEZE.json"
    freeze.write("smoke", NOISE, path)
    freeze.guard("smoke", path)  # frozen and unchanged: runs
    monkeypatch.setitem(verdict.PREDICTION2, "min_position", 0.4)
    with pytest.raises(SystemExit, match="the code has moved from FREEZE.json since the freeze"):
        freeze.guard("smoke", path)
