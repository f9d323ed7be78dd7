"""Model families: official state-dict formats, the shared input space, layer access, loading errors."""
import pytest
import torch
import torch.nn.functional as F

from helpers import models
from helpers.models import VGG, BottleneckMLP, activations, build_model, load_official, record, resolve_layer

VGG_CONVS = [0, 3, 7, 10, 14, 17, 21, 24, 28, 31]  # features.N of conv layers (BN at N+1, ReLU at N+2)
VGG_CHANNELS = [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]


def official_vgg_keys():
    """Keys and shapes of huyvnphan/PyTorch_CIFAR10's vgg13_bn.pt, written out from its description."""
    shapes, cin = {}, 3
    for n, cout in zip(VGG_CONVS, VGG_CHANNELS):
        shapes[f"features.{n}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{n}.bias"] = (cout,)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"features.{n + 1}.{p}"] = (cout,)
        shapes[f"features.{n + 1}.num_batches_tracked"] = ()
        cin = cout
    for i, (o, k) in zip((0, 3, 6), ((4096, 512), (4096, 4096), (10, 4096))):
        shapes[f"classifier.{i}.weight"], shapes[f"classifier.{i}.bias"] = (o, k), (o,)
    return shapes


def official_mlp_keys(depth=12, width=1024, resolution=64):
    """Keys and shapes of scaling_mlps' BottleneckMLP checkpoints."""
    shapes = {"linear_in.weight": (width, 3 * resolution ** 2), "linear_in.bias": (width,),
              "linear_out.weight": (10, width), "linear_out.bias": (10,)}
    for i in range(depth):
        shapes |= {f"blocks.{i}.block.0.weight": (4 * width, width), f"blocks.{i}.block.0.bias": (4 * width,),
                   f"blocks.{i}.block.2.weight": (width, 4 * width), f"blocks.{i}.block.2.bias": (width,),
                   f"layernorms.{i}.weight": (width,), f"layernorms.{i}.bias": (width,)}
    return shapes


def reference_vgg(state, x):
    """VGG13_bn's forward written from the state dict alone (the huyvnphan normalization outside)."""
    x = (x - torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)) / torch.tensor([0.2471, 0.2435, 0.2616]).view(
        1, 3, 1, 1
    )
    for i, n in enumerate(VGG_CONVS):
        x = F.conv2d(x, state[f"features.{n}.weight"], state[f"features.{n}.bias"], padding=1)
        b = f"features.{n + 1}."
        x = F.relu(
            F.batch_norm(x, state[b + "running_mean"], state[b + "running_var"], state[b + "weight"], state[b + "bias"])
        )
        if i % 2 == 1:
            x = F.max_pool2d(x, 2)
    x = x.mean((2, 3))
    x = F.relu(F.linear(x, state["classifier.0.weight"], state["classifier.0.bias"]))
    x = F.relu(F.linear(x, state["classifier.3.weight"], state["classifier.3.bias"]))
    return F.linear(x, state["classifier.6.weight"], state["classifier.6.bias"])


def reference_mlp(state, x, depth, resolution):
    """BottleneckMLP's forward as scaling_mlps feeds it: 0-255 pixels normalized with mean*255 and std*255,
    resized 32 -> resolution by pixel replication, flattened in (C, H, W) order."""
    mean = torch.tensor([0.49139968, 0.48215827, 0.44653124]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.24703233, 0.24348505, 0.26158768]).view(1, 3, 1, 1) * 255
    x = (x * 255 - mean) / std
    f = resolution // 32
    x = x.repeat_interleave(f, 2).repeat_interleave(f, 3).reshape(len(x), -1)
    x = F.linear(x, state["linear_in.weight"], state["linear_in.bias"])
    for i in range(depth):
        h = F.layer_norm(x, x.shape[-1:], state[f"layernorms.{i}.weight"], state[f"layernorms.{i}.bias"])
        h = F.gelu(F.linear(h, state[f"blocks.{i}.block.0.weight"], state[f"blocks.{i}.block.0.bias"]))
        x = x + F.linear(h, state[f"blocks.{i}.block.2.weight"], state[f"blocks.{i}.block.2.bias"])
    return F.linear(x, state["linear_out.weight"], state["linear_out.bias"])


def randomize_bn(model):
    """Non-trivial BatchNorm statistics, so eval-mode normalization is really tested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def paper_vgg():
    torch.manual_seed(0)
    return randomize_bn(VGG()).eval()


@pytest.fixture(scope="module")
def paper_mlp():
    torch.manual_seed(0)
    return BottleneckMLP(depth=12, width=1024, expansion=4, resolution=64).eval()


def test_vgg13_bn_has_the_official_keys_and_shapes(paper_vgg):
    assert {k: tuple(v.shape) for k, v in paper_vgg.state_dict().items()} == official_vgg_keys()
    assert 28_000_000 < sum(p.numel() for p in paper_vgg.parameters()) < 29_000_000


def test_b12_wi1024_has_the_official_keys_and_shapes(paper_mlp):
    assert {k: tuple(v.shape) for k, v in paper_mlp.state_dict().items()} == official_mlp_keys()


@pytest.mark.parametrize("depth,width,resolution", [(2, 64, 32), (3, 32, 64), (2, 16, 16)])
def test_mlp_keys_for_any_size(depth, width, resolution):
    model = BottleneckMLP(depth=depth, width=width, resolution=resolution)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_mlp_keys(depth, width, resolution)


def test_vgg_forward_matches_reference(paper_vgg):
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(paper_vgg(x), reference_vgg(paper_vgg.state_dict(), x), atol=1e-4)


def test_mlp_forward_matches_reference(paper_mlp):
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(paper_mlp(x), reference_mlp(paper_mlp.state_dict(), x, 12, 64), atol=1e-4)


@pytest.mark.parametrize("name,fixture,wrap", [
    ("vgg13_bn", "paper_vgg", lambda s: {f"module.{k}": v for k, v in s.items()}),
    ("B_12-Wi_1024", "paper_mlp", lambda s: {f"_orig_mod.{k}": v for k, v in s.items()}),
    ("B_12-Wi_1024", "paper_mlp", lambda s: {"state_dict": dict(s)}),
])
def test_official_round_trip(name, fixture, wrap, request, tmp_path):
    """Save in the official format (optionally wrapped), load through load_official: the same weights bit for bit,
    and the same logits (to rounding: the study's CNN runs channels-last, the fixture does not)."""
    model = request.getfixturevalue(fixture)
    path = tmp_path / "weights.pt"
    torch.save(wrap(model.state_dict()), path)
    loaded = load_official(name, path)
    assert not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5, rtol=0)


def test_official_default_path_and_missing_file(data_env, paper_vgg):
    with pytest.raises(FileNotFoundError, match="vgg13_bn.pt"):
        load_official("vgg13_bn")
    torch.save(paper_vgg.state_dict(), data_env / "vgg13_bn.pt")
    try:
        assert torch.equal(load_official("vgg13_bn").classifier[6].weight, paper_vgg.classifier[6].weight)
    finally:
        (data_env / "vgg13_bn.pt").unlink()


def test_mismatches_are_all_listed(paper_mlp, tmp_path):
    state = dict(paper_mlp.state_dict())
    del state["blocks.3.block.0.bias"], state["layernorms.11.weight"]
    state["linear_out.weight"] = torch.zeros(100, 1024)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as err:
        load_official("B_12-Wi_1024", tmp_path / "bad.pt")
    for fragment in ("missing blocks.3.block.0.bias", "missing layernorms.11.weight",
                     "linear_out.weight: file has (100, 1024), model needs (10, 1024)"):
        assert fragment in str(err.value)


def test_extra_entries_are_named_in_a_warning(paper_mlp, tmp_path):
    state = dict(paper_mlp.state_dict(), **{"head.weight": torch.zeros(2)})
    torch.save(state, tmp_path / "extra.pt")
    with pytest.warns(UserWarning, match="head.weight"):
        load_official("B_12-Wi_1024", tmp_path / "extra.pt")


def test_corrupt_checkpoint_names_the_file(tmp_path):
    (tmp_path / "vgg13_bn.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="vgg13_bn.pt.*corrupt"):
        load_official("vgg13_bn", tmp_path / "vgg13_bn.pt")


def test_unknown_names():
    with pytest.raises(ValueError, match="'resnet'"):
        load_official("resnet")
    with pytest.raises(ValueError, match="model='transformer'"):
        build_model("transformer")
    with pytest.raises(ValueError, match="layer='nope'"):
        resolve_layer(build_model("mlp", depth=1, width=8), "nope")


def test_hidden_layers(paper_vgg):
    x = torch.rand(5, 3, 32, 32)
    vgg_hidden = activations(paper_vgg, x, "hidden")
    assert vgg_hidden.shape == (5, 4096) and (vgg_hidden >= 0).all()
    with torch.no_grad():  # the last linear layer applied to the hidden layer gives the logits
        assert torch.allclose(paper_vgg.classifier[6](vgg_hidden), paper_vgg(x), atol=1e-4)

    mlp = BottleneckMLP(depth=3, width=64, resolution=32).eval()
    hidden = activations(mlp, x, "hidden")
    assert hidden.shape == (5, 64)
    with torch.no_grad():
        assert torch.allclose(mlp.linear_out(hidden), mlp(x), atol=1e-5)
    assert activations(mlp, x, "blocks.2.block.1").shape == (5, 256)  # the GELU inside the last block


def test_record_keeps_gradients():
    mlp = BottleneckMLP(depth=2, width=32, resolution=32)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    with record(mlp, ["hidden", "blocks.0.block.1"]) as acts:
        mlp(x)
    acts["hidden"][:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert set(acts) == {"hidden", "blocks.0.block.1"}


def test_folding_batchnorm_keeps_the_function_and_the_layer_names(vgg_with_learned_statistics):
    vgg = vgg_with_learned_statistics
    folded = models.fold_batchnorm(vgg)
    x = torch.rand(4, 3, 32, 32)
    for layer in ("hidden", "features.1", "features.12"):  # the last two are BatchNorms, now Identity
        assert torch.allclose(activations(folded, x, layer), activations(vgg, x, layer), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.modules()) == 10  # the original is untouched
    assert not any(p.requires_grad for p in folded.parameters())
    mlp = BottleneckMLP(depth=1, width=16, resolution=32)
    assert models.fold_batchnorm(mlp) is mlp  # nothing to fold: no copy


@pytest.mark.parametrize("channels", [8, 16])
def test_batchnorm_on_an_nchw_copy_equals_torchs(channels):
    # models.BatchNorm2d normalizes a channels-last input of few channels on an NCHW copy (a CPU speed-up): outputs,
    # gradients and running statistics must equal nn.BatchNorm2d's, the output must stay channels-last, and the
    # state dict must keep nn.BatchNorm2d's names so the official checkpoints load
    torch.manual_seed(0)
    ours, torchs = models.BatchNorm2d(channels), torch.nn.BatchNorm2d(channels)
    torch.nn.init.normal_(ours.weight)
    torchs.load_state_dict(ours.state_dict())
    x = (3 * torch.randn(32, channels, 8, 8) + 1).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(a), torchs(b)
    grad = torch.randn_like(ya)
    ya.backward(grad)
    yb.backward(grad)
    assert ya.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(ya, yb, atol=1e-5) and torch.allclose(a.grad, b.grad, atol=1e-5)
    assert torch.allclose(ours.running_var, torchs.running_var) and torch.allclose(ours.weight.grad, torchs.weight.grad,
                                                                                   atol=1e-4)
    assert list(ours.state_dict()) == list(torchs.state_dict())


def test_relative_depth_counts_convolutions_and_blocks_and_ties_go_deeper():
    from helpers.models import layer_at_depth, meta_model, readout_grid
    vgg = meta_model("cnn", width=1 / 8)
    assert layer_at_depth(vgg, 0.5) == "features.16" and layer_at_depth(vgg, 0.75) == "features.26"
    assert layer_at_depth(vgg, 0.1) == "features.2" and layer_at_depth(vgg, 1.0) == "features.33"
    mlp = meta_model("mlp", depth=4, width=64, resolution=32)
    assert [layer_at_depth(mlp, d) for d in (0.25, 0.5, 0.75, 1.0)] == [f"residual.{i}" for i in range(4)]
    resnet = meta_model("resnet", width=1 / 8, stages=(0, 1, 1, 1), head=512)
    assert layer_at_depth(resnet, 0.5) == "blocks.1"  # 0.33 and 0.67 are equally near: the deeper
    assert layer_at_depth(resnet, 0.75) == "blocks.1"  # 0.67 is nearer than 1.0: the nearest, not the first past it
    assert readout_grid((32, 8, 8), 512) == 4 and readout_grid((64, 4, 4), 512) == 3 and readout_grid((7,), 9) is None
    assert readout_grid((2, 4, 4), 10) == 2  # 8 and 18 are 2 and 8 away: 2x2
