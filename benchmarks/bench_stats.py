"""Benchmark: a full compare() with 1,000 paired bootstrap replicates, and our cost per
replicate against fairlearn's MetricFrame bootstrap (n_boot) computing per-class-and-group FNR
on the same data.

Run: .venv/bin/python benchmarks/bench_stats.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from qbias_check import compare

CLASSES = ["bald", "black", "blond", "brown", "gray"]
N = 40_000


def make_data(seed: int = 0) -> dict[str, np.ndarray]:
    """N examples with CelebA-like class shares, a float model at ~90 % and an int8 near it."""
    rng = np.random.default_rng(seed)
    y = rng.choice(5, N, p=[0.027, 0.378, 0.226, 0.314, 0.055])
    ref = np.where(rng.random(N) < 0.9, y, rng.integers(0, 5, N))
    q = np.where(rng.random(N) < 0.96, ref, rng.integers(0, 5, N))
    male = rng.choice(["female", "male"], N, p=[0.62, 0.38])
    young = rng.choice(["old", "young"], N, p=[0.2, 0.8])
    return {"y": y, "ref": ref, "q": q, "male": male, "young": young}


def timed(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def ours(d: dict[str, np.ndarray], replicates: int) -> None:
    compare(
        d["y"],
        d["ref"],
        d["q"],
        classes=CLASSES,
        attributes={"male": d["male"], "young": d["young"]},
        bootstrap=replicates,
    )


def fairlearn_frame(d: dict[str, np.ndarray], n_boot: int) -> None:
    from fairlearn.metrics import MetricFrame

    def fnr_of(c: int):  # type: ignore[no-untyped-def]
        def fnr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
            positives = y_true == c
            return float(np.mean(y_pred[positives] != c)) if positives.any() else float("nan")

        return fnr

    groups = pd.DataFrame({"male": d["male"], "young": d["young"]})
    kwargs = {"n_boot": n_boot, "ci_quantiles": [0.025, 0.975], "random_state": 0} if n_boot else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MetricFrame(
            metrics={f"fnr_{name}": fnr_of(i) for i, name in enumerate(CLASSES)},
            y_true=d["y"],
            y_pred=d["q"],
            sensitive_features=groups,
            **kwargs,
        )


def main() -> None:
    d = make_data()
    full = timed(lambda: ours(d, 1000))
    ours_per_rep = (full - timed(lambda: ours(d, 0))) / 1000
    fl_boots = 5
    fl_full = timed(lambda: fairlearn_frame(d, fl_boots), repeat=1)
    fl_per_rep = (fl_full - timed(lambda: fairlearn_frame(d, 0), repeat=1)) / fl_boots
    print(f"N = {N}, 5 classes, attributes male and young")
    print(f"compare() with 1,000 replicates:      {full:.3f} s")
    print(f"ours per replicate:                  {ours_per_rep * 1e3:.3f} ms")
    print(f"fairlearn MetricFrame per replicate: {fl_per_rep * 1e3:.1f} ms (n_boot={fl_boots})")
    print(f"speed-up per replicate:              {fl_per_rep / ours_per_rep:.0f}x")


if __name__ == "__main__":
    main()
