"""The benchmark harness: figures it cannot trust are reported as errors, not printed as results."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "run_all", Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"
)
run_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_all)


def test_a_share_above_the_peak_is_a_measurement_error():
    # 1 GFLOP of work in 1 s against a peak measured at 2 GFLOP in 1 s: 50%, fine ...
    ok = run_all.share_of_peak("x", 1e9, [1.0, 1.0, 1.1], 2e9, [1.0, 1.0, 1.0])
    assert ok["median"] == 0.5 and "error" not in ok
    # ... but a repeat whose peak turn was slowed (4 s) gives 200%: reported as an error, never as a result.
    bad = run_all.share_of_peak("x", 1e9, [1.0, 1.0, 1.0], 2e9, [1.0, 4.0, 1.0])
    assert bad["high"] == 2.0 and "error" in bad


def test_interleaved_runs_every_function_in_turns():
    calls = []
    times = run_all.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_flops_are_counted_not_estimated():
    import torch
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert run_all.flops_of(lambda: a @ b) == 2 * 8 * 16 * 4
