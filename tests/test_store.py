"""The artifact store and its cache keys: every declared input and module changes a key, and each of the four
caches that once served stale results (SAE augmentation, random-init SAEs, the AM success gate, the layer map)
recomputes when what it depends on changes."""
import dataclasses

import pytest
import torch

from helpers import profiles, sae_study, store
from helpers.models import build_model
from helpers.paths import ROOT
from helpers.sae import SparseAutoencoder
from helpers.units import SAESpec


def example_inputs(step):
    return {name: f"value of {name}" for name in step.inputs}


@pytest.mark.parametrize("step", store.CACHED_STEPS, ids=lambda s: s.name)
def test_every_declared_input_and_module_changes_the_key(step, monkeypatch):
    inputs = example_inputs(step)
    key = step.key(**inputs)
    for name in step.inputs:
        assert step.key(**dict(inputs, **{name: "another value"})) != key, name
    for module in step.modules:
        original = store.module_hash
        monkeypatch.setattr(store, "module_hash", lambda m, changed=module: "edited" if m == changed else original(m))
        assert step.key(**inputs) != key, module
        monkeypatch.setattr(store, "module_hash", original)
    with pytest.raises(TypeError, match="takes the inputs"):
        step.key(**{k: v for k, v in inputs.items() if k != step.inputs[0]})
    with pytest.raises(TypeError, match="takes the inputs"):
        step.key(**inputs, undeclared=1)


def test_the_computations_modules_are_declared():
    """What each cached result is computed with: the AM suite runs the folded CNN (models) on crops (data); the layer
    map's CKA (compare) reads the layers models names."""
    assert {"helpers.actmax", "helpers.am_study", "helpers.models", "helpers.data"} <= set(store.AM_SUITE.modules)
    assert {"helpers.compare", "helpers.models", "helpers.activations"} <= set(store.LAYER_MAP.modules)
    assert {"helpers.sae", "helpers.activations"} <= set(store.SAE_TRAINING.modules)


def test_every_artifact_names_the_notebook_that_writes_it(data_env):
    for artifact in store.ARTIFACTS.values():
        assert (ROOT / "notebooks" / artifact.notebook).is_file(), artifact.name
    with pytest.raises(FileNotFoundError, match=r"Run first: papermill notebooks/02_sae.ipynb out.ipynb -p model cnn "
                                                r"-p profile paper -p layer mid"):
        store.require("sae_summary", profile="paper", layer="mid", family="cnn")


@pytest.fixture
def counted_training(monkeypatch):
    """``sae_study.iter_saes`` replaced by a stub that records the SAEs it is asked to train."""
    calls = []

    def fake(acts, arm, seeds, **settings):
        calls.extend(settings for _ in seeds)
        return iter([(SparseAutoencoder(a.shape[1], 3), [dict(l1_coefficient=0.0)]) for a in acts])
    monkeypatch.setattr(sae_study, "iter_saes", fake)
    return calls


def tiny_mlp(seed):
    torch.manual_seed(seed)
    return build_model("mlp", depth=1, width=16, expansion=2, resolution=32)


def test_an_sae_trained_without_augmentation_is_not_reused_with_it(counted_training, data_env):
    net, acts = tiny_mlp(0), torch.randn(64, 16)
    spec = SAESpec("mlp", "trained", 0, "l1")
    for copies in (0, 0, 1):
        settings = profiles.get("smoke").sae.with_overrides(dict(augment_copies=copies))
        sae_study.train_variants("smoke", "hidden", [spec], {spec: net}, "hidden", {spec: acts}, settings)
    assert len(counted_training) == 2  # trained, loaded, and trained again for the augmented activations


def test_a_random_init_sae_follows_its_networks_weights(counted_training, data_env):
    acts, settings = torch.randn(64, 16), profiles.get("smoke").sae
    spec = SAESpec("mlp", "random-init", 0, "topk")

    def train(weights_seed):
        sae_study.train_variants("smoke", "hidden", [spec], {spec: tiny_mlp(weights_seed)}, "hidden", {spec: acts},
                                 settings)
    train(1)
    train(1)
    assert len(counted_training) == 1  # the same weights: loaded
    train(2)
    assert len(counted_training) == 2  # another initialization: trained again


def test_only_the_sae_not_cached_is_trained_and_the_stack_keeps_each_ones_result(data_env):
    """Three SAEs of one layer: two cached, one new. Only the new one trains, and what each gets is what it would
    get trained alone."""
    from helpers.sae import train_sae
    net, acts = tiny_mlp(0), torch.randn(600, 16).relu()
    specs = [SAESpec("mlp", "trained", 0, "l1", t) for t in range(3)]
    settings = profiles.get("smoke").sae.with_overrides(dict(steps=20, batch_size=64))
    first = sae_study.train_variants("smoke", "hidden", specs[:2], dict.fromkeys(specs, net), "hidden",
                                     dict.fromkeys(specs, acts), settings)
    files = {s: store.path("sae", profile="smoke", layer="hidden", sae=s.id).stat().st_mtime_ns for s in specs[:2]}
    every = sae_study.train_variants("smoke", "hidden", specs, dict.fromkeys(specs, net), "hidden",
                                     dict.fromkeys(specs, acts), settings)
    assert {s: store.path("sae", profile="smoke", layer="hidden", sae=s.id).stat().st_mtime_ns
            for s in specs[:2]} == files
    for spec in specs:
        alone, _ = train_sae(acts, "l1", seed=spec.sae_seed, progress=False, **settings.training())
        assert torch.allclose(every[spec][0].W_enc, alone.W_enc, atol=1e-6)
    assert torch.equal(first[specs[0]][0].W_dec, every[specs[0]][0].W_dec)


def test_the_layer_map_is_cached_under_the_networks_weights(monkeypatch, data_env):
    """The CKA maps are cached under the networks' fingerprints: other weights compute them again. They describe;
    nothing is chosen from them (the layer pairs are fixed by depth)."""
    from helpers import train
    nets = {"cnn": lambda: build_model("cnn", width=1 / 16), "mlp": lambda: build_model("mlp", depth=3, width=16,
                                                                                        expansion=2, resolution=32),
            "resnet": lambda: build_model("resnet", width=1 / 16, stages=(0, 1, 1, 1), head=32)}
    weights = {"seed": 0}

    def trained(family, profile, seed=0):
        torch.manual_seed(weights["seed"])
        return nets[family]().eval()
    monkeypatch.setattr(train, "load_trained", trained)
    monkeypatch.setattr(train, "random_model", lambda family, profile, seed=0: trained(family, profile).eval())
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(profiles.get("smoke"),
                                                                      compare=profiles.Compare(layer_map_images=40)))
    first = sae_study.layer_map("smoke")
    saved = torch.load(store.path("layer_map", profile="smoke"), weights_only=True)["value"]
    assert "choice" not in saved and saved["trained"].shape == (len(first["cnn_layers"]), len(first["mlp_layers"]))
    assert first["reference"].shape == (len(first["cnn_layers"]), len(first["reference_layers"]))
    before = store.path("layer_map", profile="smoke").stat().st_mtime_ns
    sae_study.layer_map("smoke")
    assert store.path("layer_map", profile="smoke").stat().st_mtime_ns == before  # loaded, not computed
    weights["seed"] = 1  # other weights: the maps are computed again
    sae_study.layer_map("smoke")
    assert store.path("layer_map", profile="smoke").stat().st_mtime_ns != before


def test_a_page_reads_results_its_profile_shares_and_never_writes_them(tmp_path, monkeypatch):
    """A competence-matched page finds the base's results where ``store.owner`` says; if one is missing or was made
    from other inputs it is told to run the base's page, and nothing is written into the base's folder."""
    monkeypatch.setenv("INTERPRET_MLP_DATA", str(tmp_path))
    where = dict(profile="smoke-matched", family="mlp", network="trained", setting="plain", model_seed=0, am_seed=0)
    inputs = {name: 0 for name in store.AM_SUITE.inputs}
    with pytest.raises(RuntimeError, match="belongs to the 'smoke' profile's results.*--profile smoke"):
        store.AM_SUITE(lambda: 1 / 0, where, **inputs)  # refused before anything is computed
    assert not list(tmp_path.rglob("*.pt"))
    assert store.AM_SUITE(lambda: {"images": 1}, dict(where, profile="smoke"), **inputs) == {"images": 1}
    assert store.AM_SUITE(lambda: 1 / 0, where, **inputs) == {"images": 1}  # the base's, read where it is
    matched_cnn = dict(where, family="cnn")  # the matched CNN's own result, in its own folder
    assert store.AM_SUITE(lambda: {"images": 2}, matched_cnn, **inputs) == {"images": 2}
    assert store.ARTIFACTS["am_run"].path(**matched_cnn).parent.parent.name == "smoke-matched"
    # a matched profile's models are its base's checkpoints
    assert store.ARTIFACTS["training_record"].path(profile="smoke-matched", family="cnn", seed=1) == \
        store.ARTIFACTS["training_record"].path(profile="smoke", family="cnn", seed=1)
