"""The study's two model families, state-dict compatible with their official checkpoints.

Every model takes images in [0, 1] of shape (N, 3, 32, 32) and applies its own preprocessing inside,
so activation maximization and activation harvesting treat both families the same way.
"""
import contextlib
import copy
import hashlib
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from helpers import profiles
from helpers.paths import data_dir

VGG13_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
# huyvnphan/PyTorch_CIFAR10 normalization (applied to [0, 1] pixels).
VGG_MEAN, VGG_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
# scaling_mlps normalization (applied to 0-255 pixels, hence the factor 255).
MLP_MEAN, MLP_STD = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (the same parameters, buffers and state-dict names) that normalizes a channels-last input of
    fewer than 16 channels on an NCHW copy. Torch's CPU kernel for channels-last vectorizes across channels, which at
    8 channels leaves most of each vector empty: at the cpu CNNs' first layers, (256, 8, 32, 32), a training step of
    the layer (forward and backward) took 23 ms channels-last and 5 ms on the copy; the cpu VGG's training step went
    from 97 to 76 ms. The arithmetic is the same."""

    def forward(self, x):
        if (self.num_features < 16 and x.device.type == "cpu" and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class Normalize(nn.Module):
    """(x * scale - mean) / std per channel; buffers are not saved, so state_dict keys stay official."""

    def __init__(self, mean, std, scale=1.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * scale, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * scale, persistent=False)

    def forward(self, x):
        return (x * self.scale - self.mean) / self.std


class VGG(nn.Module):
    """VGG with batch norm, CIFAR variant of huyvnphan/PyTorch_CIFAR10 (``features``, ``avgpool``, ``classifier``).

    ``width`` scales every channel count and the classifier's 4096 hidden units (1.0 is VGG13_bn).
    """

    hidden_layer = "classifier.4"  # the second ReLU of the classifier
    # ReLUs are not in-place (unlike the original): an in-place ReLU would overwrite the recorded output
    # of the layer before it. Parameters and state_dict keys are unaffected.

    def __init__(self, config=VGG13_CONFIG, width=1.0, num_classes=10):
        super().__init__()
        self.normalize = Normalize(VGG_MEAN, VGG_STD)
        layers, channels = [], 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = max(1, round(v * width))
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), BatchNorm2d(out), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        hidden = max(1, round(4096 * width))
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
            nn.Linear(hidden, num_classes))
        # He initialization of the convolutions (as torchvision's VGG): with PyTorch's default init the signal
        # of a fresh 10-conv network fades to a constant, which would make random-network baselines meaningless.
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def logits_from_hidden(self, h):
        """The logits from the last hidden layer's output: what ``forward`` runs after ``hidden_layer``."""
        return self.classifier[5:](h)


class BottleneckBlock(nn.Module):
    def __init__(self, thin, wide):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(thin, wide), nn.GELU(), nn.Linear(wide, thin))

    def forward(self, x):
        return self.block(x)


class BottleneckMLP(nn.Module):
    """The bottleneck MLP of Bachmann et al. 2023 (``linear_in``, ``blocks``, ``layernorms``, ``linear_out``).

    ``resolution`` is the side the official pipeline feeds the network: 32x32 inputs are resized to it
    the way FFCV's area resize does (pixel replication for integer upsampling), then flattened in
    (C, H, W) order. ``residual.i`` (parameter-free) exposes the residual stream after block i.
    """

    def __init__(self, depth=12, width=1024, expansion=4, resolution=64, num_classes=10):
        super().__init__()
        if resolution % 32 and 32 % resolution:
            raise ValueError(f"resolution={resolution}: use a multiple or a divisor of 32 (e.g. 32 or 64).")
        self.resolution = resolution
        self.normalize = Normalize(MLP_MEAN, MLP_STD, scale=255.0)
        self.linear_in = nn.Linear(3 * resolution * resolution, width)
        self.blocks = nn.ModuleList(BottleneckBlock(width, expansion * width) for _ in range(depth))
        self.layernorms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.residual = nn.ModuleList(nn.Identity() for _ in range(depth))
        self.linear_out = nn.Linear(width, num_classes)
        self.hidden_layer = f"residual.{depth - 1}"  # the stream after the last block, before linear_out

    def forward(self, x):
        x = self.normalize(x)
        if self.resolution > x.shape[-1]:
            x = F.interpolate(x, scale_factor=self.resolution // x.shape[-1], mode="nearest")
        elif self.resolution < x.shape[-1]:
            x = F.interpolate(x, size=self.resolution, mode="area")
        x = self.linear_in(torch.flatten(x, 1))
        for block, norm, residual in zip(self.blocks, self.layernorms, self.residual):
            x = residual(x + block(norm(x)))
        return self.linear_out(x)

    def logits_from_hidden(self, h):
        """The logits from the last hidden layer's output: what ``forward`` runs after ``hidden_layer``."""
        return self.linear_out(h)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (a 1x1 convolution where the shape changes)."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), BatchNorm2d(c_out))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), BatchNorm2d(c_out)))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A residual CNN, the study's reference family: the CNN's inductive bias (convolution, pooling) in another
    design than VGG's (residual blocks, global average pooling, no fully connected hidden layers).

    ``stages`` blocks at channels (64, 128, 256, 512) x ``width``, the first stage at full resolution and each later
    one halving it (ResNet-18's layout is stages (2, 2, 2, 2) at width 1). ``head``: a 1x1 convolution to that
    many channels after the last stage, so that the last hidden layer (its ReLU, averaged over positions) can be as
    wide as the VGG's at the same width; 0 for none."""

    def __init__(self, width=1.0, stages=(2, 2, 2, 2), head=0, num_classes=10):
        super().__init__()
        self.normalize = Normalize(VGG_MEAN, VGG_STD)
        channels = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, padding=1, bias=False), BatchNorm2d(channels[0]),
                                  nn.ReLU())
        blocks, c_in = [], channels[0]
        for i, (n, c) in enumerate(zip(stages, channels)):
            for j in range(n):
                blocks.append(BasicBlock(c_in, c, 2 if i > 0 and j == 0 else 1))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = (nn.Sequential(nn.Conv2d(c_in, head, 1, bias=False), BatchNorm2d(head), nn.ReLU())
                     if head else nn.Identity())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(head or c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    hidden_layer = "pool"  # the last hidden layer: the head's ReLU averaged over positions, before ``fc``

    def forward(self, x):
        x = self.head(self.blocks(self.stem(self.normalize(x))))
        return self.fc(self.pool(x))

    def logits_from_hidden(self, h):
        """The logits from the last hidden layer's output: what ``forward`` runs after ``hidden_layer``."""
        return self.fc(h)


# ----------------------------------------------------------------------------- building and loading

FAMILIES = {"cnn": VGG, "mlp": BottleneckMLP, "resnet": ResNet}


def memory_format(family):
    """The layout a family's weights and training batches use. Convolutions run about 1.5x faster on CPUs
    channels-last (the activations follow), in the same fp32 arithmetic: the cpu CNN harvests 10,000 images in
    1.4-1.9 s instead of 2.5-3.1 s. The MLP has no convolution."""
    return torch.channels_last if profiles.FAMILY[family].channels_last else torch.contiguous_format


def build_model(family, **arch):
    """A fresh model of ``family`` ('cnn' or 'mlp') with architecture keywords ``arch``, in its ``memory_format``."""
    if family not in FAMILIES:
        raise ValueError(f"model={family!r} is not one of {tuple(FAMILIES)}; use 'cnn' (VGG), 'mlp' (BottleneckMLP) "
                         "or 'resnet' (ResNet, the reference CNN).")
    return FAMILIES[family](**arch).to(memory_format=memory_format(family))


OFFICIAL = {
    "vgg13_bn": dict(family="cnn", arch=dict(width=1.0), file="vgg13_bn.pt"),
    "B_12-Wi_1024": dict(family="mlp", arch=dict(depth=12, width=1024, expansion=4, resolution=64),
                         file="B-12_Wi-1024_res_64_cifar10_epochs_20_weights"),
}
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _unwrap(obj):
    """The state dict inside whatever the original projects saved (plain dict or {'state_dict': ...})."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def _strip(key):
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_state_dict_checked(model, state, source):
    """Load ``state`` into ``model`` only if every parameter is present with the right shape.

    Mismatches are listed all at once (never a half-loaded model); extra entries are named in a warning.
    """
    state = {_strip(k): v for k, v in _unwrap(state).items()}
    expected = model.state_dict()
    problems = []
    for key, value in expected.items():
        if key not in state:
            if not key.endswith("num_batches_tracked"):  # absent from some older BatchNorm checkpoints
                problems.append(f"missing {key} {tuple(value.shape)}")
        elif tuple(state[key].shape) != tuple(value.shape):
            problems.append(f"{key}: file has {tuple(state[key].shape)}, model needs {tuple(value.shape)}")
    if problems:
        raise ValueError(f"{source} does not fit {type(model).__name__}:\n  " + "\n  ".join(problems))
    extra = sorted(set(state) - set(expected))
    if extra:
        warnings.warn(f"{source}: ignoring {len(extra)} entries the model does not have: {', '.join(extra)}",
                      stacklevel=2)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    model.load_state_dict({k: state[k] for k in expected}, strict=True)
    return model


def read_checkpoint(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first_line = (str(e).splitlines() or [""])[0]
        raise ValueError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {first_line}); "
                         "the file is truncated or corrupt. Download it again.") from e


SOURCES = {"cnn": "huyvnphan/PyTorch_CIFAR10", "mlp": "gregorbachmann/scaling_mlps, utils/download.py"}


def load_official(name, path=None):
    """An official checkpoint (``'vgg13_bn'`` or ``'B_12-Wi_1024'``) as a study model in eval mode.

    ``path`` defaults to the original file name in ``Data/``.
    """
    if name not in OFFICIAL:
        raise ValueError(f"name={name!r} is not one of {tuple(OFFICIAL)}.")
    spec = OFFICIAL[name]
    path = Path(path) if path is not None else data_dir() / spec["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"official checkpoint {path} not found. Download {spec['file']} "
            f"({SOURCES[spec['family']]}) "
            f"into {data_dir()}, or pass path=."
        )
    model = build_model(spec["family"], **spec["arch"])
    return load_state_dict_checked(model, read_checkpoint(path), path).eval()


# ----------------------------------------------------------------------------- layers

def resolve_layer(model, layer):
    """The module named ``layer`` (``'hidden'`` is the model's last hidden layer)."""
    name = model.hidden_layer if layer == "hidden" else layer
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        some = [n for n in modules if n][:12]
        raise ValueError(f"layer={layer!r} is not a layer of {type(model).__name__}; "
                         f"use 'hidden' or a module name such as {some} ...")
    return name, modules[name]


def representation_layers(model):
    """Every layer that holds a representation of the image, from input to output: the CNN's ReLUs (convolutional,
    then classifier), the ResNet's stem, blocks, head and pooled features, the MLP's embedding and its residual
    stream after each block."""
    if isinstance(model, VGG):
        return ([f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
                + [f"classifier.{i}" for i, m in enumerate(model.classifier) if isinstance(m, nn.ReLU)])
    if isinstance(model, ResNet):
        head = ["head"] if isinstance(model.head, nn.Sequential) else []
        return ["stem"] + [f"blocks.{i}" for i in range(len(model.blocks))] + head + ["pool"]
    return ["linear_in"] + [f"residual.{i}" for i in range(len(model.blocks))]


@contextlib.contextmanager
def record(model, layers):
    """Record the outputs of named layers during forward passes: ``with record(m, ['hidden']) as acts:``.

    Outputs are kept with their graph, so gradients can flow through them (activation maximization).
    """
    acts, handles = {}, []
    for layer in layers:
        name, module = resolve_layer(model, layer)

        def hook(_module, _inputs, output, layer=layer):
            acts[layer] = output
        handles.append(module.register_forward_hook(hook))
    try:
        yield acts
    finally:
        for h in handles:
            h.remove()


def depth_layers(model):
    """The layers that relative depth counts, in order: the VGG's convolutions (each read after its ReLU), the
    ResNet's residual blocks, the MLP's blocks (the residual stream after each)."""
    if isinstance(model, VGG):
        return [f"features.{i + 2}" for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    if isinstance(model, ResNet):
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    return [f"residual.{i}" for i in range(len(model.blocks))]


def layer_at_depth(model, depth):
    """The one of ``depth_layers`` whose relative depth, (index + 1) / count, is nearest ``depth`` (of two equally
    near, the deeper): half of VGG13's ten convolutions is the fifth, three quarters of them the eighth (0.8 against
    0.7); of the cpu ResNet's three blocks, the second (2/3) at both half and three quarters of depth."""
    layers = depth_layers(model)
    return min(reversed(layers), key=lambda name: abs((layers.index(name) + 1) / len(layers) - depth))


def meta_model(family, **arch):
    """``build_model`` on the meta device: its modules and shapes, without weights."""
    with torch.device("meta"):
        return build_model(family, **arch).eval()


def layer_shapes(model, layers):
    """{layer: the shape of its output for one image}, from a pass of ``model`` (a ``meta_model``) on the meta device:
    shapes only, no arithmetic."""
    with record(model, layers) as acts:
        model(torch.empty(1, 3, 32, 32, device="meta"))
    return {layer: tuple(acts[layer].shape[1:]) for layer in layers}


def readout_grid(shape, width):
    """The side g of the g x g grid a conv map of ``shape`` (channels, height, width) is averaged to, so that channels
    x g² is nearest ``width`` (the other network's layer size; of two equally near, the finer); None for a vector."""
    if len(shape) == 1:
        return None
    return min(range(1, shape[1] + 1), key=lambda g: (abs(shape[0] * g * g - width), -g))


def fold_batchnorm(model):
    """A copy of ``model`` for inference in which every BatchNorm2d that follows a Conv2d in an nn.Sequential is
    folded into that convolution (its eval-mode statistics become the convolution's weight and bias).

    The same function up to float rounding, with one layer fewer to run forwards and backwards (activation
    maximization's CNN steps; ``benchmarks/run_all.py`` measures the gain and the images' quality). Folded
    BatchNorms become ``nn.Identity``, so layer names stay and a hook on one still sees the normalized output. The
    copy's weights need no gradient. A model without such pairs (the MLP) is returned as it is, not copied.
    """
    def pairs(m):
        return [(seq, i) for seq in m.modules() if isinstance(seq, nn.Sequential) for i in range(len(seq) - 1)
                if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d)]
    if not pairs(model):
        return model
    folded = copy.deepcopy(model).eval()
    for seq, i in pairs(folded):
        seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), nn.Identity()
    return folded.requires_grad_(False)


@torch.no_grad()
def activations(model, images, layer="hidden", batch_size=500):
    """Activations of ``layer`` for float images in [0, 1], batched, flattened per image."""
    device = next(model.parameters()).device
    out = []
    with record(model, [layer]) as acts:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size].to(device))
            out.append(acts[layer].flatten(1).float().cpu())
    return torch.cat(out)


def fingerprint(model):
    """A short hash of a model's weights: its identity in every cache key, whether it was trained here, initialized
    at random or loaded from a published checkpoint."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]
