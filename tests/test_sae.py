"""Sparse autoencoder: decoder norm, resampling, metrics on known inputs, ground-truth recovery, harvest cache."""
import pytest
import torch

from helpers import activations, sae_study
from helpers import sae as saelib
from helpers.models import build_model, fingerprint
from helpers.sae import train as sae_training


def test_decoder_columns_stay_unit_norm():
    acts = torch.randn(2000, 16).relu()
    sae, log = saelib.train_sae(acts, expansion=3, steps=30, batch_size=64, lr=1e-2, progress=False, log_every=10)
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(48), atol=1e-5)
    assert len(log) == 3 and {"mse", "l0", "explained_variance", "silent", "resampled"} <= set(log[0])


def test_parallel_gradient_is_removed():
    stack = saelib.SAEStack([saelib.SparseAutoencoder(8, 2, seed=s) for s in range(3)])
    stack.W_dec.grad = torch.randn_like(stack.W_dec)
    stack.remove_parallel_gradient()
    assert (stack.W_dec.grad * stack.W_dec).sum(-1).abs().max() < 1e-6


@pytest.mark.parametrize("arm", saelib.ARMS)
def test_saes_trained_as_one_stack_get_what_each_gets_alone(arm):
    """Four SAEs (two on the same activations with different seeds, two on other activations) trained as one stack,
    long enough for λ's calibration, AuxK and both resamplings to act: each ends where training it alone ends."""
    g = torch.Generator().manual_seed(0)
    sets = [torch.relu(torch.randn(3000, 6, generator=g) @ torch.randn(6, 24, generator=g)) for _ in range(3)]
    sets, seeds = [sets[0], sets[0], sets[1], sets[2]], [0, 1, 0, 5]
    # a large starting λ leaves L1 features dead early, so resampling has work
    settings = dict(target_l0=3, expansion=4, steps=200, batch_size=64, log_every=50, l1_start=30.0, progress=False)
    together = saelib.train_saes(sets, arm, seeds, **settings)
    for (sae, log), acts, seed in zip(together, sets, seeds):
        alone, alone_log = saelib.train_sae(acts, arm, seed=seed, **settings)
        for mine, theirs in zip(sae.state_dict().values(), alone.state_dict().values()):
            assert torch.allclose(mine, theirs, atol=1e-5), arm
        assert [r["resampled"] for r in log] == [r["resampled"] for r in alone_log]
        assert [r["l1_coefficient"] for r in log] == pytest.approx([r["l1_coefficient"] for r in alone_log])
    # within a budget of two SAEs per stack: stacks [0, 1] and [2, 3], each SAE as in one stack of four
    budget = saelib.stack_bytes(2, 2, 3000, 24, 96, 64)  # SAEs of 24 -> 96
    assert saelib.plan_stacks(sets, 4, 64, budget) == [[0, 1], [2, 3]]
    for (sae, _), (whole, _) in zip(saelib.train_saes(sets, arm, seeds, memory=budget, **settings), together):
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(sae.state_dict().values(),
                                                                      whole.state_dict().values()))
    assert all(log[-1]["resampled"] > 0 for _, log in together)  # resampling took part
    assert not torch.allclose(together[0][0].W_enc, together[1][0].W_enc)  # the seeds differ
    with pytest.raises(ValueError, match="one shape"):
        saelib.train_saes([sets[0], sets[0][:, :8]], arm, [0, 1], steps=1, progress=False)


def test_a_stack_decodes_a_sparse_code_as_the_dense_one():
    stack = saelib.SAEStack([saelib.SparseAutoencoder(8, 3, seed=s, scale=2.0) for s in range(2)])
    f = torch.relu(torch.randn(2, 5, 24))
    top = f.topk(4, dim=-1)
    dense = torch.zeros_like(f).scatter(-1, top.indices, top.values)
    chosen = saelib.Entries.of_indices(top.indices, stack.n_features)
    values = dense.reshape(10, 24)[chosen.rows, chosen.columns % 24]
    assert torch.allclose(stack.decode_sparse(values, chosen), stack.decode(dense), atol=1e-6)
    alone = stack.sae(1)
    assert torch.allclose(alone.decode(dense[1]), stack.decode(dense)[1], atol=1e-6)


def test_resampling_revives_dead_features():
    torch.manual_seed(0)
    acts = torch.randn(4000, 16)
    stack = saelib.SAEStack([saelib.SparseAutoencoder(16, 2, seed=s) for s in range(2)])
    with torch.no_grad():
        stack.b_enc[1, :10] = -100.0  # these ten of the second SAE can never fire
    opt = torch.optim.Adam(stack.parameters(), lr=1e-3)
    stack.decode(torch.relu(stack.pre_activations(acts[:64].expand(2, 64, 16)))).pow(2).sum().backward()
    opt.step()
    stack.normalize_decoder()
    before = stack.sae(0).state_dict()
    saelib.resample_dead(stack, opt, 1, torch.arange(10), acts[:512])
    f = stack.sae(1).encode(acts)
    assert ((f[:, :10] > 0).float().mean(0) > 0).all()  # every resampled feature fires again
    moments = opt.state[stack.W_enc]["exp_avg"]
    assert (moments[1, :10] == 0).all() and (moments[1, 10:] != 0).any() and (moments[0, :10] != 0).any()
    assert all(torch.equal(v, before[k]) for k, v in stack.sae(0).state_dict().items())  # the other SAE untouched
    assert torch.allclose(stack.W_dec.norm(dim=-1), torch.ones(2, 32), atol=1e-5)


def test_training_resamples_features_that_never_fire():
    acts = torch.randn(3000, 8).abs()
    _, log = saelib.train_sae(acts, expansion=4, l1_start=30.0, target_l0=1, lr=3e-2, steps=200, batch_size=128,
                              progress=False)
    assert log[-1]["resampled"] > 0


def exact_sae(d):
    """W_enc = [I; -I], W_dec = [I, -I] reconstructs exactly: relu(x) - relu(-x) = x."""
    sae = saelib.SparseAutoencoder(d, 2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)]))
        sae.W_dec.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 1))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_metrics_on_a_known_autoencoder():
    sae = exact_sae(4)
    acts = torch.tensor([[1.0, 0, 0, 2], [0, 3, 0, 0], [1, 1, 1, 0]])  # non-negative: the -I half never fires
    metrics, frequency = saelib.reconstruction_metrics(sae, acts)
    assert metrics["mse"] == pytest.approx(0) and metrics["explained_variance"] == pytest.approx(1)
    assert metrics["l0"] == pytest.approx(6 / 3)
    assert metrics["dead"] == 4 and metrics["dense"] == 4
    assert frequency.tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0])


@pytest.mark.parametrize("arm", saelib.ARMS)
def test_ground_truth_dictionary_is_recovered_with_default_settings(arm):
    """Vectors built from 3 of 96 known atoms on average: each arm, told only the target L0 (3), finds most atoms.
    (The L1 arm's λ is set by its calibration, not by hand.)"""
    data, atoms = saelib.synthetic_dictionary_data(20000, d=32, n_atoms=96, active=3, seed=0)
    sae, log = saelib.train_sae(data, arm=arm, target_l0=3, batch_size=256, steps=1500, progress=False)
    best = saelib.atom_recovery(sae, atoms)
    assert (best > 0.9).float().mean() > 0.8, best
    shuffled = torch.randn(atoms.shape, generator=torch.Generator().manual_seed(123))
    chance = saelib.atom_recovery(sae, shuffled / shuffled.norm(dim=1, keepdim=True))
    assert chance.median() < 0.6  # random directions do not match a learned column
    metrics, _ = saelib.reconstruction_metrics(sae, data)
    assert 0.67 * 3 <= metrics["l0"] <= 1.5 * 3  # within the gate's band of the target
    assert metrics["dead"] / metrics["n_features"] <= 0.10


@pytest.mark.parametrize("target", [4, 24])
def test_l1_calibration_reaches_its_target_l0(target):
    data, _ = saelib.synthetic_dictionary_data(20000, d=32, n_atoms=96, active=8, seed=1)
    sae, log = saelib.train_sae(data, arm="l1", target_l0=target, batch_size=256, steps=600, progress=False)
    metrics, _ = saelib.reconstruction_metrics(sae, data)
    assert 0.67 * target <= metrics["l0"] <= 1.5 * target, metrics["l0"]
    assert log[-1]["l1_coefficient"] != log[0]["l1_coefficient"]


def test_topk_keeps_exactly_k_and_auxk_revives_dead_latents():
    data, _ = saelib.synthetic_dictionary_data(20000, d=32, n_atoms=96, active=3, seed=2)
    sae, log = saelib.train_sae(data, arm="topk", target_l0=4, batch_size=256, steps=600, progress=False)
    f = saelib.feature_activations(sae, data)
    assert ((f > 0).sum(1) <= 4).all() and (f > 0).sum(1).float().mean() > 3.5
    metrics, _ = saelib.reconstruction_metrics(sae, data)
    assert metrics["dead"] / metrics["n_features"] <= 0.10, metrics["dead"]
    with pytest.raises(ValueError, match="arm='relu' is not one of"):
        saelib.train_sae(data, arm="relu", steps=1, progress=False)


def test_sae_state_loads_without_unpickling(tmp_path):
    sae, _ = saelib.train_sae(torch.randn(500, 8), arm="topk", target_l0=2, steps=5, batch_size=64, progress=False)
    torch.save(sae.to_state(), tmp_path / "sae.pt")
    again = saelib.SparseAutoencoder.from_state(torch.load(tmp_path / "sae.pt", weights_only=True))
    x = torch.randn(20, 8)
    assert again.k == 2 and torch.equal(again.encode(x), sae.encode(x))


def test_nan_activations_are_refused():
    acts = torch.randn(100, 4)
    acts[3, 1] = float("nan")
    with pytest.raises(FloatingPointError, match="1 activation vectors contain NaN"):
        saelib.train_sae(acts, steps=1, progress=False)


def test_a_loss_that_diverges_stops_training_at_its_step(monkeypatch):
    real, calls = saelib.mse_loss, []

    def mse_that_diverges(sae, x, recon):
        calls.append(1)
        return real(sae, x, recon) * (float("inf") if len(calls) == 7 else 1.0)
    monkeypatch.setattr(sae_training, "mse_loss", mse_that_diverges)  # where train_step looks it up
    with pytest.raises(FloatingPointError, match=r"SAE loss became inf at step 7 \(l1, lr=0.01\); lower lr"):
        saelib.train_sae(torch.randn(500, 8).relu(), steps=20, batch_size=64, lr=1e-2, progress=False)


def test_harvest_is_cached(data_env, cifar_test):
    model = build_model("mlp", depth=1, width=16, resolution=32).eval()
    acts, labels = activations.harvest_activations(model, "hidden", "test")
    assert acts.shape == (10000, 16) and torch.equal(labels, cifar_test[1])
    files = list((data_env / "activations").glob(f"{fingerprint(model)}-*"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    again, _ = activations.harvest_activations(model, "hidden", "test")
    assert torch.equal(acts, again) and files[0].stat().st_mtime_ns == before
    augmented, aug_labels = activations.harvest_activations(model, "hidden", "test", augment_copies=1)
    assert augmented.shape == (20000, 16) and torch.equal(augmented[:10000], acts)
    assert not torch.equal(augmented[10000:], acts) and torch.equal(aug_labels[10000:], labels)
    before = set((data_env / "activations").glob("*-residual.0-test-aug0-*"))
    with torch.no_grad():
        model.linear_out.weight.add_(1)  # other weights, other cache entry
    activations.harvest_activations(model, "hidden", "test")
    new = set((data_env / "activations").glob("*-residual.0-test-aug0-*")) - before
    assert [p.name.split("-")[0] for p in new] == [fingerprint(model)]


@pytest.mark.parametrize("family", ["cnn", "mlp", "resnet"])
def test_predicted_classes_from_the_cached_hidden_layer_are_the_networks(family, data_env, cifar_test):
    from helpers.train import config_for, predictions
    config = config_for(family, "smoke")
    torch.manual_seed(1)
    model = build_model(config["family"], **config["arch"]).eval()
    predicted = activations.predicted_classes(model, cifar_test[0])
    assert torch.equal(predicted, predictions(model, cifar_test[0])) and len(predicted.unique()) > 1


def test_layers_harvested_together_are_each_as_alone_and_cached(data_env, cifar_test):
    model = build_model("mlp", depth=2, width=16, resolution=32).eval()
    alone = activations.harvest_activations(model, "blocks.0", "test", cache=False)
    both = activations.harvest_layers(model, ["blocks.0", "hidden"], "test")
    assert torch.equal(both["blocks.0"][0], alone[0]) and both["hidden"][0].shape == (10000, 16)
    cached = sorted(p.name.split("-")[1] for p in (data_env / "activations").glob(f"{fingerprint(model)}-*"))
    assert cached == ["blocks.0", "residual.1"]  # 'hidden' is cached under the module it names
    assert torch.equal(activations.harvest_activations(model, "hidden", "test")[0], both["hidden"][0])


def test_downstream_metrics_on_a_perfect_and_a_useless_sae(cifar_test):
    """Both SAEs evaluated in one pass (``evaluate_saes`` stacks their spliced batches): each gets its own result."""
    model = build_model("mlp", depth=1, width=8, resolution=32).eval()
    images, labels = cifar_test[0][::20], cifar_test[1][::20]
    acts, _ = activations.harvest_activations(model, "hidden", "test", cache=False)
    useless = exact_sae(8)
    with torch.no_grad():
        useless.W_dec.zero_()  # reconstructs every input as b_dec = 0: the zero-ablated layer
    (perfect, _), (broken, _) = sae_study.evaluate_saes(model, "hidden", [(exact_sae(8), acts[::20], None),
                                                                        (useless, acts[::20], None)],
                                                        images, labels, acts.mean(0))
    assert perfect["accuracy_spliced"] == pytest.approx(perfect["accuracy_original"])
    assert perfect["loss_recovered"] == pytest.approx(1.0)
    assert broken["explained_variance"] < 0.01 and broken["loss_recovered"] < 0.9


def test_conv_layers_are_read_pooled_and_spliced_back(cifar_test):
    model = build_model("cnn", width=1 / 16).eval()
    images, labels = cifar_test[0][:200], cifar_test[1][:200]
    reps = activations.layer_representations(model, images, ["features.9", "classifier.1"])
    channels = model.features[7].out_channels
    assert reps["features.9"].shape == (200, channels * activations.POOL ** 2) and reps["classifier.1"].shape[0] == 200
    same = saelib.spliced_accuracy(model, "features.9", images, labels, lambda a: a)
    plain = saelib.spliced_accuracy(model, "hidden", images, labels, lambda a: a)
    assert same["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    broken = saelib.spliced_accuracy(model, "features.9", images, labels, lambda a: torch.zeros_like(a) + 5)
    assert broken["loss"] != pytest.approx(plain["loss"], rel=1e-3)
    # several replacements in one pass (the layers after the splice run on their stacked batch): each as alone
    together = saelib.spliced_accuracies(model, "features.9", images, labels,
                                         [lambda a: torch.zeros_like(a) + 5, lambda a: a, lambda a: a * 0.5],
                                         batch_size=64)
    alone = saelib.spliced_accuracy(model, "features.9", images, labels, lambda a: a * 0.5, batch_size=64)
    assert together[0]["loss"] == pytest.approx(broken["loss"], rel=1e-5)
    assert together[1]["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert together[2] == pytest.approx(alone, rel=1e-5)


@pytest.mark.parametrize("family", ["cnn", "mlp", "resnet"])
def test_splicing_from_the_cached_hidden_layer_equals_the_full_pass(family, cifar_test):
    """At the last hidden layer the spliced accuracy and loss from the layer's harvested output (only the layers
    after it run) are the full pass's, for the untouched layer and for a replacement that changes the answers."""
    from helpers.train import config_for
    config = config_for(family, "smoke")
    torch.manual_seed(0)
    model = build_model(config["family"], **config["arch"]).eval()
    images, labels = cifar_test[0][:300], cifar_test[1][:300]
    outputs = activations.layer_representations(model, images, ["hidden"])["hidden"]
    replacements = [lambda a: a, lambda a: a.flip(1).mul_(3)]
    seen = []  # the images each pass runs through the whole network
    model.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    full = saelib.spliced_accuracies(model, "hidden", images, labels, replacements, batch_size=128)
    assert sum(seen) == 300
    seen.clear()
    cached = saelib.spliced_accuracies(model, "hidden", images, labels, replacements, batch_size=128, outputs=outputs)
    assert sum(seen) == 250  # the check of the harvest's first images only
    assert full[0]["loss"] != pytest.approx(full[1]["loss"], rel=1e-3)
    for f, c in zip(full, cached):
        assert c["accuracy"] == f["accuracy"] and c["loss"] == pytest.approx(f["loss"], rel=1e-5)
    with pytest.raises(ValueError, match="300 images"):
        saelib.spliced_accuracies(model, "hidden", images, labels, replacements, outputs=outputs[:10])
    with pytest.raises(ValueError, match="another copy of CIFAR-10"):  # a harvest of other images
        saelib.spliced_accuracies(model, "hidden", images, labels, replacements, outputs=outputs.roll(1, 0))


@pytest.mark.parametrize("arm", saelib.ARMS)
def test_saelens_files_encode_raw_activations_as_the_sae_does(arm, tmp_path):
    """The files hold SAELens's tensors (scale folded in): read back with safetensors alone, and applied as SAELens
    applies them (f = act((x - b_dec) W_enc + b_enc)), they give the SAE's own features and reconstruction."""
    import json

    from safetensors.torch import load_file
    acts = torch.randn(800, 12).relu() * 7.0  # a scale far from 1, so an unfolded scale would show
    sae, _ = saelib.train_sae(acts, arm, target_l0=3, steps=40, batch_size=64, progress=False)
    folder = saelib.write_saelens(sae, tmp_path / "sae", "classifier.4", "a test model", dict(seed=0))
    config = json.loads((folder / "cfg.json").read_text())
    assert config["architecture"] == ("standard" if arm == "l1" else "topk") and config["d_sae"] == 36
    assert config["metadata"]["hook_name"] == "classifier.4" and config["normalize_activations"] == "none"
    w = load_file(str(folder / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (12, 36) and w["W_dec"].shape == (36, 12)
    pre = (acts - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if arm == "topk":
        top = pre.topk(config["k"], dim=1)
        f = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
    else:
        f = pre.relu()
    recon, ours = sae(acts)
    assert torch.allclose(f, ours, atol=1e-4) and torch.allclose(f @ w["W_dec"] + w["b_dec"], recon, atol=1e-4)
    again = saelib.read_saelens(folder)
    assert torch.allclose(again.encode(acts), ours, atol=1e-4) and again.k == sae.k
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left


def test_stacks_are_planned_within_the_budget():
    sets = [torch.zeros(100, 8)] * 2 + [torch.ones(100, 8)] * 3
    one = saelib.stack_bytes(1, 1, 100, 8, 24, 16)
    assert saelib.plan_stacks(sets, 3, 16, 10**12) == [[0, 1, 2, 3, 4]]
    assert saelib.plan_stacks(sets, 3, 16, one) == [[0], [1], [2], [3], [4]]
    assert saelib.plan_stacks(sets, 3, 16, 0) == [[0], [1], [2], [3], [4]]  # one SAE over the budget still trains
    # a second SAE on the same vectors costs less than one on other vectors (the vectors are held once)
    assert saelib.stack_bytes(2, 1, 100, 8, 24, 16) < saelib.stack_bytes(2, 2, 100, 8, 24, 16)
    three_on_two_sets = saelib.stack_bytes(3, 2, 100, 8, 24, 16)
    assert saelib.plan_stacks(sets, 3, 16, three_on_two_sets) == [[0, 1, 2], [3, 4]]


def test_the_memory_budget_follows_the_setting_and_refuses_nonsense(monkeypatch):
    monkeypatch.setenv(saelib.MEMORY_VARIABLE, "0.5")
    assert saelib.memory_budget("cpu") == 2**29
    monkeypatch.setenv(saelib.MEMORY_VARIABLE, "lots")
    with pytest.raises(ValueError, match="INTERPRET_MLP_SAE_MEMORY_GIB='lots'"):
        saelib.memory_budget("cpu")
    monkeypatch.delenv(saelib.MEMORY_VARIABLE)
    assert 0 < saelib.memory_budget("cpu") <= saelib.CPU_STACK_BYTES


PEAK_SCRIPT = """
import sys, torch
import helpers.sae as saelib
torch.set_num_threads(1)
saelib.train_saes([torch.randn(500, 64)], "l1", [0], steps=3, progress=False, device="cpu")  # torch's own set-up
acts = [torch.randn(4000, 1024) for _ in range(2)]

def status(field):  # kB; this process's own (ru_maxrss would carry the parent's peak across fork and exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":")) * 1024
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from here
out = saelib.train_saes([acts[i % 2] for i in range(6)], "l1", list(range(6)), steps=4, progress=False,
                        device="cpu", memory=int(sys.argv[1]))
returned = sum(t.numel() * t.element_size() for sae, _ in out for t in sae.state_dict().values())
print(status("VmHWM") - base - returned)
"""


def test_the_trainers_peak_memory_stays_within_its_budget():
    """Six SAEs of 1024 -> 3,072 on two sets of 4,000 vectors, in a fresh process: the trainer's peak resident memory
    beyond the SAEs it returns stays within a budget of two SAEs per stack, and one stack of six exceeds it (the
    measurement can fail)."""
    import subprocess
    import sys

    budget = saelib.stack_bytes(2, 2, 4000, 1024, 3072, 256)
    sets = [torch.empty(4000, 1024), torch.empty(4000, 1024)] * 3
    assert saelib.plan_stacks(sets, 3, 256, budget) == [[0, 1], [2, 3], [4, 5]]

    def peak(memory):
        run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(memory)], capture_output=True, text=True,
                             check=True)
        return int(run.stdout.split()[-1])
    assert peak(budget) <= budget
    assert peak(10**12) > budget


def test_a_loaded_sae_holds_its_states_tensors_and_a_cache_is_checked_without_loading(tmp_path):
    from helpers.paths import has_cached, save_cached
    state = saelib.SparseAutoencoder(8, 3, seed=1, scale=2.0).to_state()
    sae = saelib.SparseAutoencoder.from_state(state)
    assert sae.W_enc.data_ptr() == state["state_dict"]["W_enc"].data_ptr() and float(sae.scale) == 2.0
    save_cached(tmp_path / "x.pt", {"a": 1}, dict(state=state))
    assert has_cached(tmp_path / "x.pt", {"a": 1}) and not has_cached(tmp_path / "x.pt", {"a": 2})
    assert not has_cached(tmp_path / "missing.pt", {"a": 1})
    (tmp_path / "bad.pt").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="truncated or corrupt"):
        has_cached(tmp_path / "bad.pt", {"a": 1})


def gradients(stack):
    return {name: p.grad.clone() for name, p in stack.named_parameters()}


def same_gradients(expected, found):
    """Every parameter's gradient equal to float tolerance (Adam's first steps hide a gradient's scale)."""
    for name, grad in expected.items():
        assert grad.abs().max() > 0, name
        assert torch.allclose(found[name], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item()), name


def test_the_sparse_l1_step_is_the_dense_step(monkeypatch):
    """Three SAEs with about a fifth of their features active, three steps each way: the step over the code's
    nonzeros (``SPARSE_STEP_SHARE``) gives the dense step's parameters, losses and firing counts."""
    import copy
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(3, 64, 16, generator=g) @ torch.randn(16, 32, generator=g))
    saes = [saelib.SparseAutoencoder(32, 4, seed=s) for s in range(3)]
    for sae in saes:
        with torch.no_grad():
            sae.b_enc -= 1.5
    out = {}
    for share in (0.0, 1.0):
        monkeypatch.setattr(sae_training, "SPARSE_STEP_SHARE", share)
        stack = saelib.SAEStack(copy.deepcopy(saes))
        opt = saelib.new_optimizer(stack, "l1", 1e-3)
        steps = [(*saelib.train_step(stack, opt, x, torch.tensor([0.1, 0.2, 0.3]), None), gradients(stack))
                 for _ in range(3)]
        out[share] = stack.state_dict(), steps
    (dense, dense_steps), (sparse, sparse_steps) = out[0.0], out[1.0]
    assert all(torch.allclose(dense[k], sparse[k], atol=1e-6) for k in dense)
    for (mse_d, fired_d, grad_d), (mse_s, fired_s, grad_s) in zip(dense_steps, sparse_steps):
        assert torch.allclose(mse_d, mse_s, atol=1e-6) and torch.equal(fired_d, fired_s)
        same_gradients(grad_d, grad_s)
    active = (stack.pre_activations(x) > 0).sum(-1).float().mean().item()
    assert 4 < active < 0.5 * stack.n_features  # sparse enough to test something, not empty


def test_the_sparse_topk_step_is_the_dense_step():
    """Three TopK SAEs, one with no dead latent, one with fewer dead latents than AuxK's k, one with more, and vectors
    with fewer than k positive pre-activations: the step over the selected entries gives the dense step's
    gradients, firing counts, parameters and losses."""
    import copy
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(3, 64, 16, generator=g) @ torch.randn(16, 32, generator=g))
    saes = [saelib.SparseAutoencoder(32, 4, seed=s, k=6) for s in range(3)]
    with torch.no_grad():
        saes[2].b_enc -= 5.0  # most vectors have fewer than 6 positive pre-activations
    dead = torch.zeros(3, 128, dtype=torch.bool)
    dead[1, :5] = True      # fewer than k_aux
    dead[2, 10:60] = True   # more than k_aux
    stacks = [saelib.SAEStack(copy.deepcopy(saes)) for _ in range(2)]
    opts = [saelib.new_optimizer(stack, "topk", 1e-3) for stack in stacks]
    assert ((stacks[0].pre_activations(x)[2] > 0).sum(-1) < 6).float().mean() > 0.5
    for _ in range(3):
        mse, fired = saelib.train_step(stacks[0], opts[0], x, None, dead)
        dense_mse, loss = saelib.dense_topk_loss(stacks[1], x, dead, k_aux=16)
        opts[1].zero_grad()
        loss.sum().backward()
        stacks[1].remove_parallel_gradient()
        same_gradients(gradients(stacks[1]), gradients(stacks[0]))
        top = torch.relu(stacks[1].pre_activations(x)).topk(6, dim=-1)
        assert torch.equal(fired, torch.zeros(3, 128).scatter_add(1, top.indices.flatten(1),
                                                                  (top.values > 0).flatten(1).float()))
        opts[1].step()
        stacks[1].normalize_decoder()
        assert torch.allclose(mse, dense_mse.detach(), atol=1e-6)
    sparse, dense = stacks[0].state_dict(), stacks[1].state_dict()
    assert all(torch.allclose(sparse[k], dense[k], atol=1e-6) for k in dense)
