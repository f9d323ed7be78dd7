"""This project beside the tools its users would pick instead, on the same work, in one process:

- SAE training: this trainer (both arms) against SAELens (TopK and standard L1 training SAEs, its SAETrainer) and
  overcomplete's TopKSAE (its train_sae), on the cpu models' last hidden layers: 50,000 training vectors from
  the CIFAR-10 training images, 512 -> 1,536 features, target L0 32, batches of 256, 1,000 steps, each tool's
  default learning rate and settings otherwise. Reported per run: held-out explained variance (the 10,000 test
  vectors, the same formula for every tool), held-out L0, dead share (features firing on none of the test vectors)
  and training wall time; and for each peer the time this trainer needs to reach the peer's explained variance
  (from this trainer's runs at 250, 500 and 1,000 steps), as a ratio.
- Interoperability: every SAE this project writes in SAELens's layout (``helpers.sae.export``) loaded with
  ``sae_lens.SAE.load_from_disk``; it must encode the test vectors to the same features.
- AM: this renderer (``helpers.actmax.render``, all targets in one batch) against Lucent's ``render_vis`` (one
  objective per call, as its tutorials run it) on the cpu VGG's channels (features.19, 8 channels) and class
  logits (10) at 32 px: the same steps, Fourier parameterization with decorrelated colour, jitter of 2 px, no
  preprocessing (the model normalizes inside). Reported: the objective value each image reaches (read by the same
  forward pass), the share of images above the natural-image 99% quantile, and seconds per image.

Needs the cpu study's models (``python -m helpers.study --profile cpu``) and the optional peers
(``pip install -r benchmarks/requirements-peers.txt``). Writes benchmarks/peers.json and prints the rows.

    python benchmarks/peers.py [--quick]
"""
import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from helpers import actmax
from helpers import sae as saelib
from helpers.activations import harvest_activations
from helpers.train import load_trained

HERE = Path(__file__).resolve().parent
TARGET_L0, EXPANSION, BATCH = 32, 3, 256


def held_out(encode, decode, test):
    """Explained variance, L0 and dead share on ``test`` with the same formula for every tool."""
    with torch.no_grad():
        f = torch.cat([encode(test[i:i + 2048]) for i in range(0, len(test), 2048)])
        recon = torch.cat([decode(f[i:i + 2048]) for i in range(0, len(f), 2048)])
    sse = (recon - test).pow(2).sum()
    sst = (test - test.mean(0)).pow(2).sum()
    return dict(explained_variance=float(1 - sse / sst), l0=float((f > 0).sum(1).float().mean()),
                dead_share=float(((f > 0).sum(0) == 0).float().mean()))


def batches(train, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(train), generator=g) for _ in range(steps * BATCH // len(train) + 1)])
    for i in range(steps):
        yield train[order[i * BATCH:(i + 1) * BATCH]]


def ours(train, test, arm, steps):
    start = time.perf_counter()
    sae, _ = saelib.train_sae(train, arm, target_l0=TARGET_L0, expansion=EXPANSION, steps=steps, batch_size=BATCH,
                              progress=False, device="cpu")
    seconds = time.perf_counter() - start
    return sae, dict(tool="interpret-mlp", arm=arm, steps=steps, seconds=seconds,
                     **held_out(sae.encode, lambda f: sae.decode(f), test))


def saelens_run(train, test, arm, steps, l1_coefficient=None):
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    d = train.shape[1]
    if arm == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=EXPANSION * d, k=TARGET_L0))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d, d_sae=EXPANSION * d,
                                                            l1_coefficient=l1_coefficient))
    # SAETrainerConfig's lr_end default (lr / 10) is filled in by the LLM runner's config, not here
    cfg = SAETrainerConfig(total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, device="cpu",
                           lr_end=3e-5, n_batches_for_norm_estimate=10)
    start = time.perf_counter()
    SAETrainer(cfg, sae, batches(train, steps + 20)).fit()
    seconds = time.perf_counter() - start
    sae.eval()
    row = dict(tool="SAELens", arm=arm, steps=steps, seconds=seconds,
               **held_out(lambda x: sae.encode(x), lambda f: sae.decode(f), test))
    if l1_coefficient is not None:
        row["l1_coefficient"] = l1_coefficient
    return row


def overcomplete_run(train, test, steps):
    # overcomplete 0.3.0 imports its plotting helpers at package import, which fails with this matplotlib; the SAE
    # does not use them, so an empty module stands in for them
    sys.modules.setdefault("overcomplete.visualization", types.ModuleType("overcomplete.visualization"))
    for name in ("overlay_top_heatmaps", "evidence_top_images", "zoom_top_images", "contour_top_image"):
        setattr(sys.modules["overcomplete.visualization"], name, None)
    from overcomplete.sae import TopKSAE, train_sae
    from overcomplete.sae.losses import top_k_auxiliary_loss
    d = train.shape[1]
    model = TopKSAE(d, nb_concepts=EXPANSION * d, top_k=TARGET_L0, device="cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loader = list(batches(train, steps))
    start = time.perf_counter()
    train_sae(model, loader, top_k_auxiliary_loss, optimizer, nb_epochs=1, monitoring=0, device="cpu")
    seconds = time.perf_counter() - start
    model.eval()
    return dict(tool="overcomplete", arm="topk", steps=steps, seconds=seconds,
                **held_out(lambda x: model.encode(x)[1], lambda f: model.decode(f), test))


def loads_in_saelens(sae, test, folder):
    """Whether SAELens loads this project's files of ``sae`` and encodes ``test`` to the same features."""
    from sae_lens import SAE
    saelib.write_saelens(sae, folder, "hidden", "benchmark", dict(source="benchmarks/peers.py"))
    theirs = SAE.load_from_disk(str(folder))
    with torch.no_grad():
        a, b = sae.encode(test), theirs.encode(test)
    return dict(architecture=theirs.cfg.architecture(), max_abs_difference=float((a - b).abs().max()),
                same_active_features=float(((a > 0) == (b > 0)).float().mean()))


def time_to(runs, explained_variance):
    """The seconds of this trainer's first run (in order of steps) reaching ``explained_variance``."""
    return next((r["seconds"] for r in sorted(runs, key=lambda r: r["steps"])
                 if r["explained_variance"] >= explained_variance), None)


def bench_saes(quick):
    steps = 200 if quick else 1000
    rows, interop = [], []
    for family in ("mlp", "cnn"):
        net = load_trained(family, "cpu", 0)
        train, test = (harvest_activations(net, "hidden", split)[0] for split in ("train", "test"))
        mine = {}
        for arm in saelib.ARMS:
            counts = ([steps // 4, steps // 2] if not quick else []) + [steps]
            mine[arm] = [ours(train, test, arm, s)[1] for s in counts]
            sae = saelib.train_sae(train, arm, target_l0=TARGET_L0, steps=20, progress=False)[0]
            with tempfile.TemporaryDirectory() as folder:
                interop.append(dict(family=family, arm=arm, **loads_in_saelens(sae, test, Path(folder) / "sae")))
        peers = [saelens_run(train, test, "topk", steps), overcomplete_run(train, test, steps)]
        l1 = [saelens_run(train, test, "l1", steps, c) for c in ((1.0, 5.0) if quick else (1.0, 3.0, 10.0))]
        peers.append(min(l1, key=lambda r: abs(r["l0"] / TARGET_L0 - 1)))  # the one nearest the target L0
        for peer in peers:
            arm = "topk" if peer["arm"] == "topk" else "l1"
            reach = time_to(mine[arm], peer["explained_variance"])
            peer.update(family=family, our_seconds_to_its_explained_variance=reach,
                        time_ratio_peer_over_ours=peer["seconds"] / reach if reach else None)
        for runs in mine.values():
            rows += [dict(r, family=family) for r in runs]
        rows += peers
    return rows, interop


def bench_am(quick):
    """This renderer against Lucent's render_vis on the cpu VGG's channels and class logits."""
    from lucent.optvis import objectives, param, render
    from lucent.optvis import transform as lucent_transform

    from helpers.am_study import objective_values
    from helpers.data import load_cifar10, to_float
    net = load_trained("cnn", "cpu", 0).eval()
    steps = 32 if quick else 128
    natural = to_float(load_cifar10("test", verbose=False)[0][:2000])
    cases = {"channels features.19": (("features.19", "features_19"), list(range(4 if quick else 8))),
             "class logits": (("logits", None), list(range(4 if quick else 10)))}
    rows, color = [], actmax.cifar_color_matrix()  # read once, outside the timed renders
    for name, ((layer, lucent_layer), targets) in cases.items():
        ours_objective = actmax.channel(layer, targets) if layer != "logits" else actmax.class_logit(targets)
        start = time.perf_counter()
        mine = actmax.render(net, ours_objective, steps=steps, seed=0, color_matrix=color,
                             progress=False).images
        our_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = []
        for t in targets:
            objective = (objectives.channel(lucent_layer, t) if lucent_layer else
                         objectives.Objective(lambda model, t=t: -model("labels")[:, t].mean()))
            images = render.render_vis(net, objective, param_f=lambda: param.image(32, fft=True, decorrelate=True),
                                       transforms=[lucent_transform.jitter(2)], thresholds=(steps,),
                                       preprocess=False, progress=False, show_image=False,
                                       fixed_image_size=32)[-1]
            theirs.append(torch.as_tensor(images).permute(0, 3, 1, 2))
        their_seconds = time.perf_counter() - start
        theirs = torch.cat(theirs)
        reached = {tool: objective_values(net, ours_objective, images).diagonal()
                   for tool, images in (("interpret-mlp", mine), ("Lucent", theirs))}
        bar = objective_values(net, ours_objective, natural).quantile(0.99, dim=0)
        for tool, seconds in (("interpret-mlp", our_seconds), ("Lucent", their_seconds)):
            rows.append(dict(objective=name, tool=tool, images=len(targets), steps=steps,
                             seconds_per_image=seconds / len(targets),
                             median_value=float(reached[tool].median()),
                             success_share=float((reached[tool] > bar).float().mean())))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and targets (a check that it runs)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    sae_rows, interop = bench_saes(args.quick)
    am_rows = bench_am(args.quick)
    out = dict(machine=f"{torch.get_num_threads()} threads, torch {torch.__version__}", quick=args.quick,
               sae=sae_rows, saelens_loads=interop, am=am_rows)
    if not args.quick:
        (HERE / "peers.json").write_text(json.dumps(out, indent=1) + "\n")
    for section in ("sae", "saelens_loads", "am"):
        print(f"\n## {section}")
        for row in out[section]:
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    main()
