"""SAE training throughput against the hardware limit, and against scikit-learn's dictionary learning.

    python benchmarks/bench_sae.py [--profile cpu] [--steps 100]

1. Throughput (activation vectors per second) of train_sae for each hidden-layer size, next to the machine's
   measured float32 matrix-multiply rate: the fraction of the hardware limit reached (an SAE step costs about
   6 * 2 * d_in * d_features FLOP per vector: forward, backward, encoder and decoder).
2. The same activations decomposed by sklearn's MiniBatchDictionaryLearning with non-negative codes: time,
   explained variance and L0 on held-out vectors, next to the SAE's at a similar L0.
Uses the profile's trained models when their checkpoints exist, else random-weight models (said so).
"""
import argparse
import time
import warnings

import torch

from helpers import sae as saelib
from helpers.train import FAMILY_NAMES, load_trained, random_model


def matmul_flops(n=2048, repeats=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def explained_variance(x, recon):
    return 1 - (x - recon).pow(2).sum().item() / (x - x.mean(0)).pow(2).sum().item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--sklearn-vectors", type=int, default=5000)
    args = parser.parse_args()
    peak = matmul_flops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: float32 matmul {peak / 1e9:.1f} GFLOP/s (2048x2048)")
    for family in ("cnn", "mlp"):
        try:
            net, note = load_trained(family, args.profile, device="cpu"), "trained"
        except FileNotFoundError:
            net, note = random_model(family, args.profile, device="cpu"), "random weights (no checkpoint)"
        acts, _ = saelib.harvest_activations(net, "hidden", "test")
        d = acts.shape[1]
        saelib.train_sae(acts, steps=5, batch_size=args.batch_size, progress=False, device="cpu")  # warm-up
        start = time.perf_counter()
        sae, _ = saelib.train_sae(acts, steps=args.steps, batch_size=args.batch_size, progress=False, device="cpu")
        seconds = time.perf_counter() - start
        rate = args.steps * args.batch_size / seconds
        flops = rate * 6 * 2 * d * sae.n_features
        print(f"{FAMILY_NAMES[family]} ({args.profile}, {note}) SAE {d}->{sae.n_features}: {rate:,.0f} vectors/s, "
              f"{flops / 1e9:.1f} GFLOP/s = {flops / peak:.0%} of the matmul rate")

        # scikit-learn on the same vectors (a subset: its coordinate-descent coding is far slower).
        from sklearn.decomposition import MiniBatchDictionaryLearning
        from sklearn.exceptions import ConvergenceWarning
        warnings.filterwarnings("ignore", category=ConvergenceWarning)  # one per coded batch; the numbers say it
        train, held = acts[:args.sklearn_vectors], acts[-2000:]
        mean, scale = train.mean(0), train.pow(2).sum(1).mean().sqrt()
        start = time.perf_counter()
        sae, _ = saelib.train_sae(train, steps=args.steps * 4, batch_size=256, progress=False, device="cpu")
        sae_seconds = time.perf_counter() - start
        metrics, _ = saelib.reconstruction_metrics(sae, held)
        dl = MiniBatchDictionaryLearning(n_components=3 * d, alpha=0.1, batch_size=256, max_iter=1,
                                         fit_algorithm="cd", transform_algorithm="lasso_cd", transform_alpha=0.1,
                                         positive_code=True, random_state=0)
        start = time.perf_counter()
        dl.fit(((train - mean) / scale).numpy())
        codes = dl.transform(((held - mean) / scale).numpy())
        sk_seconds = time.perf_counter() - start
        recon = torch.as_tensor(codes @ dl.components_).float() * scale + mean
        print(f"    on {len(train)} vectors: SAE {sae_seconds:.1f} s (explained variance {metrics['explained_variance']:.3f}, "
              f"L0 {metrics['l0']:.1f}); sklearn MiniBatchDictionaryLearning (alpha 0.1, 1 epoch) {sk_seconds:.1f} s "
              f"(explained variance {explained_variance(held, recon):.3f}, L0 {(codes > 0).sum(1).mean():.1f}); "
              f"time ratio sklearn/SAE x{sk_seconds / sae_seconds:.1f}")


if __name__ == "__main__":
    main()
