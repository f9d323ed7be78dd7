"""Profiles: one object per profile, checked once; the only place run settings are written; the README's table and
the book's table of contents follow them; notebooks stay one call per cell."""
import json
import re

import pytest
import yaml

from helpers import manifest, profiles
from helpers.paths import ROOT


def test_every_profile_is_complete_and_checked():
    for p in profiles.PROFILES.values():
        # a competence-matched profile runs the proposal's layer only; every other profile both study layers
        assert p.model_seeds and set(p.layer_arms) == ({"hidden"} if p.matching else set(profiles.STUDY_LAYERS))
        assert p.official == (not p.training)
        if p.matching:
            base = profiles.get(p.matching.base)
            # its model seeds are the base's first ones (its SAEs of the MLP are the base's)
            # the base's recipes, for the families it keeps (the cpu pair keeps no ResNet: the budget's cut)
            assert p.training == {f: base.training[f] for f in p.training} and not base.matching
            assert set(p.matching.families) <= set(p.families) - {"mlp"}
            assert p.model_seeds == base.model_seeds[:len(p.model_seeds)]
            assert p.layer_arms["hidden"][0] == "l1"  # the proposal's SAE
        if p.matching and profiles.REFERENCE not in p.families:
            assert set(p.families) == set(profiles.FAMILIES) and p.matching.base in ("smoke", "cpu")
        elif not p.official:
            assert set(p.families) == set(profiles.ALL_FAMILIES)
            assert set(p.training) == set(profiles.ALL_FAMILIES) | set(p.scale_models)
            # the reference CNN is trained with the CNN's recipe: only the architecture differs
            cnn, ref = (p.training[f].as_dict() for f in ("cnn", profiles.REFERENCE))
            assert {k: v for k, v in cnn.items() if k != "arch"} == {k: v for k, v in ref.items() if k != "arch"}
    assert profiles.get("official").model_seeds == (0,)  # one published model per family
    # four model seeds, two SAE seeds each, three AM seeds: the exploratory lists before the freeze, then fresh ones
    cpu = profiles.get("cpu")
    assert (cpu.model_seeds, cpu.sae_seeds, cpu.am.am_seeds) == tuple(profiles.CPU_SEEDS[k] for k in ("model", "sae",
                                                                                                      "am"))
    assert len(cpu.model_seeds) == 4 and len(cpu.sae_seeds) == 2 and len(cpu.am.am_seeds) == 3
    for bad in (2, [], [0, 0], [-1], [0.5]):
        with pytest.raises(ValueError, match="must be a non-empty list of distinct non-negative integer seeds"):
            profiles.Profile("x", "x", {}, model_seeds=bad)
    with pytest.raises(ValueError, match="profile='gpu' is not one of"):
        profiles.get("gpu")


def test_overrides_are_checked_once_with_the_fix():
    am = profiles.get("cpu").am
    assert am.with_overrides({"steps": 10}).steps == 10 and am.steps == 256  # a copy; the profile stays
    assert isinstance(am.with_overrides({"lr": 1}).lr, float)
    for bad, message in (({"steps": "many"}, "parameter steps='many' (str) must be an integer"),
                         ({"steps": 0}, "parameter steps=0 must be at least 1"),
                         ({"parameterization": "dct"}, "is not one of ('fft', 'pixel')"),
                         ({"stepz": 1}, "'stepz' is not a setting of AM"),
                         ([("steps", 1)], "must be a dict of settings"),
                         ({"am_seeds": 2}, "am_seeds=2 must be a non-empty list")):
        with pytest.raises(ValueError, match=re.escape(message)):
            am.with_overrides(bad)


SETTING = re.compile(r"^\s*(epochs|units|am_seeds|steps|natural_images|replicates|target_l0|expansion|augment_copies|"
                     r"shuffles|pairs|am_steps|model_seeds|features_shown|am_features)\s*=\s*\d", re.M)


def test_run_settings_are_written_in_the_profiles_module_only():
    """No notebook parameter cell, study runner or benchmark driver sets a profile's settings itself."""
    sources = [*ROOT.glob("notebooks/*.ipynb"), ROOT / "helpers" / "study.py", ROOT / "helpers" / "manifest.py",
               ROOT / "helpers" / "train.py", ROOT / "benchmarks" / "full_size.py",
               ROOT / "benchmarks" / "stress_explorers.py"]
    for path in sources:
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code")
        assert not SETTING.findall(text), (path.name, SETTING.findall(text))


def test_notebook_code_cells_are_short():
    for path in ROOT.glob("notebooks/*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert len("".join(cell["source"]).splitlines()) <= 15, (path.name, cell["source"][:2])


def test_the_readme_table_of_profiles_is_the_generated_one():
    assert profiles.table_markdown() in (ROOT / "README.md").read_text()


def _committed_seeds():
    return tuple(sorted(int(re.search(r"seed(\d+)", p.name).group(1))
                        for p in (ROOT / "book" / "cpu" / "results").glob("cnn_cpu_seed*.json")))


def test_the_book_contents_come_from_the_manifest():
    """The committed book's contents are the manifest's at the seeds its run used (its training records)."""
    assert _committed_seeds() == profiles.CPU_SEEDS["model"]
    assert yaml.safe_load((ROOT / "_toc.yml").read_text()) == manifest.toc(["cpu"])
    for step in manifest.steps("cpu"):
        assert (ROOT / "notebooks" / step.notebook).is_file()


def _freeze_marks(record):
    """Every ``freeze`` value a results record holds, at any depth."""
    if isinstance(record, dict):
        return [v for k, v in record.items() if k == "freeze"] + [m for v in record.values() for m in _freeze_marks(v)]
    return [m for v in record for m in _freeze_marks(v)] if isinstance(record, list) else []


def test_the_committed_book_is_the_confirmatory_run_under_the_freeze():
    """The book's answers are the confirmatory run's: the confirmatory seeds, and every results record that can carry
    the freeze (training records, SAE, AM and comparison summaries) carries this FREEZE.json's digest, written when the
    record was made. The atlases hold pictures of features, not results, and carry none."""
    from helpers import freeze
    assert profiles.CPU_SEEDS is profiles.CONFIRMATORY_SEEDS and _committed_seeds() == profiles.CPU_SEEDS["model"]
    records = sorted((ROOT / "book" / "cpu" / "results").glob("*.json"))
    unmarked = [p.name for p in records if not _freeze_marks(json.loads(p.read_text()))
                and not p.name.startswith("atlas_")]
    trained = {f"{s.parameters['model']}_cpu_seed{s.parameters['seed']}.json" for s in manifest.steps("cpu")
               if s.notebook == "00_train.ipynb"}
    assert not unmarked and len(trained) == 14 and trained <= {p.name for p in records}, unmarked
    marks = {m for p in records for m in _freeze_marks(json.loads(p.read_text()))}
    assert marks == {freeze.digest()} and freeze.digest() is not None, marks


def test_the_layer_table_fixes_pairs_by_relative_depth_and_reads_them_at_equal_size():
    """The cpu study's pairs: half of VGG13's ten convolutions (the fifth, 32 channels on 8x8 at 1/8 width, read on a
    4x4 grid: 512 values, the MLP's width), half of the MLP's four blocks, the ResNet's nearest block; three quarters;
    the last hidden layers. The same table whatever the seed: it reads architectures only."""
    table = profiles.layer_table("cpu")
    assert list(table) == ["hidden", "mid", "late"]
    mid = table["mid"]
    assert (mid["cnn"]["layer"], mid["cnn"]["shape"], mid["cnn"]["grid"], mid["cnn"]["size"]) == \
        ("features.16", (32, 8, 8), 4, 512)
    assert (mid["mlp"]["layer"], mid["mlp"]["grid"], mid["mlp"]["size"]) == ("residual.1", None, 512)
    assert mid["resnet"]["layer"] == "blocks.1" and mid["resnet"]["size"] == 512
    assert table["late"]["cnn"]["layer"] == "features.26" and table["late"]["mlp"]["layer"] == "residual.2"
    assert table["late"]["resnet"]["layer"] == "blocks.1"  # its nearest block (2/3) to three quarters
    assert {f: e["layer"] for f, e in table["hidden"].items()} == dict(cnn="classifier.4", mlp="residual.3",
                                                                         resnet="pool")
    for row in table.values():  # every CNN map read within a factor 1.5 of the MLP layer's size
        assert all(abs(e["size"] / row["mlp"]["size"] - 1) <= 0.5 for e in row.values())
    paper = profiles.layer_table("paper")["mid"]
    assert paper["mlp"]["layer"] == "residual.5" and (paper["cnn"]["grid"], paper["cnn"]["size"]) == (2, 1024)
    assert set(profiles.layer_table("official")["mid"]) == {"cnn", "mlp"}


def test_every_mlp_trains_with_the_cnns_crops():
    """Prediction 1 asks whether the MLP learned the shift invariance the CNN has: both are shown the same shifts."""
    for name in ("smoke", "cpu", "paper"):
        training = profiles.get(name).training
        for mlp in ("mlp", "mlp-small"):
            assert training[mlp].crop == training["cnn"].crop > 0, (name, mlp)


def test_the_topk_robustness_row_keeps_its_base_steps_where_the_l1_arm_trains_longer():
    """The cpu study's budget cut: at the last hidden layers the deciding L1 arm trains 2,000 steps, the TopK row
    1,000; elsewhere both train the base count, and a profile without the cut trains both arms alike."""
    cpu = profiles.get("cpu")
    assert cpu.sae_at("hidden").training("l1")["steps"] == 2000
    assert cpu.sae_at("hidden").training("topk")["steps"] == 1000
    assert cpu.sae_at("mid").training("topk")["steps"] == cpu.sae_at("mid").training("l1")["steps"] == 1000
    smoke = profiles.get("smoke").sae_at("hidden")
    assert smoke.training("topk") == smoke.training("l1")


def test_the_confirmatory_seeds_were_never_used():
    """The confirmatory run's model, SAE and AM seeds are disjoint from every list an earlier run used, and there are
    enough of them: four model seeds per family, two SAE seeds, three AM seeds."""
    confirm, used = profiles.CONFIRMATORY_SEEDS, profiles.USED_SEEDS
    assert set(confirm) == set(used) == {"model", "sae", "am"}
    for kind in confirm:
        assert not set(confirm[kind]) & set(used[kind]), kind
        assert profiles.check_seeds(kind, confirm[kind]) == confirm[kind]
    assert len(confirm["model"]) >= 4 and len(confirm["sae"]) >= 2 and len(confirm["am"]) >= 3
    assert profiles.CPU_SEEDS in (confirm, used)  # the cpu profiles run one list or the other, whole
    for name in ("cpu", "cpu-matched"):
        p = profiles.get(name)
        assert set(p.model_seeds) <= set(profiles.CPU_SEEDS["model"]) and p.sae_seeds == profiles.CPU_SEEDS["sae"]


def test_an_edited_layer_table_does_not_change_the_next_callers():
    """The table is computed once per profile; a caller that edits its copy (as a freeze test does) must not leak the
    edit into every later reader in the process."""
    table = profiles.layer_table("smoke")
    table["mid"]["mlp"]["layer"] = "elsewhere"
    assert profiles.layer_table("smoke")["mid"]["mlp"]["layer"] != "elsewhere"
