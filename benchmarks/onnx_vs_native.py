"""ONNX (onnxruntime) vs native scikit-learn latency for the example's models, in one run.

Targets (issue 4): ONNX single-row >= 10x faster and batch >= 2x faster for each model.
Run: python benchmarks/onnx_vs_native.py [INTRA_OP_THREADS]   (0, the default, = all cores)
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlops_ci.packaging import convert

DATA = Path(__file__).resolve().parents[1] / "examples" / "iris" / "data"
SINGLE_RUNS = 2000
BATCHES = (100, 1_000, 10_000)
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 0


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times)


def main() -> None:
    warnings.simplefilter("ignore")
    train = pd.read_csv(DATA / "train.csv")
    x, y = train.drop(columns=["species"]), train["species"]
    print(
        f"onnxruntime intra-op threads: {THREADS or 'all cores'}; native = scikit-learn "
        "predict_proba on a DataFrame; medians; ratio = native / onnx"
    )
    for label, model in (
        ("logistic regression", LogisticRegression(max_iter=1000)),
        ("random forest, 50 trees", RandomForestClassifier(n_estimators=50, random_state=0)),
    ):
        model.fit(x, y)
        sess = convert.session(convert.convert_sklearn(model, x, None), THREADS, "all")
        ratios = []
        for rows in (1, *BATCHES):
            frame = x.iloc[np.arange(rows) % len(x)].reset_index(drop=True)
            as32 = convert.as_float32(frame)
            runs = SINGLE_RUNS if rows == 1 else max(20, 20_000 // rows)
            native = median_ms(lambda m=model, f=frame: m.predict_proba(f), runs)
            onnx = median_ms(lambda s=sess, a=as32: s.run(None, {convert.INPUT_NAME: a}), runs)
            ratios.append(native / onnx)
            print(
                f"  {label:<24} {rows:>6} rows  native {native:8.3f} ms  onnx {onnx:8.3f} ms"
                f"  {native / onnx:6.1f}x"
            )
        single, worst_batch = ratios[0], min(ratios[1:])
        verdict = "met" if single >= 10 and worst_batch >= 2 else "MISSED"
        print(
            f"  {label:<24} single row {single:.1f}x (target ≥10x), smallest batch ratio "
            f"{worst_batch:.1f}x (target ≥2x): {verdict}"
        )


if __name__ == "__main__":
    main()
