"""What the model runner costs: a call through its pipe against the same call in process.

A logistic regression trained on the iris example is scored on one row and on a 1,000-row
batch (``predict_proba`` of a DataFrame), in this process and through a ``ModelRunner`` (the
sandboxed child where bwrap works), alternated, in the same run; also the runner's start and
first load. Prints milliseconds of each and the ratio.

Run: python benchmarks/model_runner.py [--calls 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops_ci.runner import ModelRunner

ROOT = Path(__file__).resolve().parents[1]


def per_call_ms(fn: Callable[[Any], Any], x: Any, calls: int) -> float:
    for _ in range(min(50, calls)):
        fn(x)
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    train = pd.read_csv(ROOT / "examples" / "iris" / "data" / "train.csv")
    features = train.drop(columns=["species"])
    model = LogisticRegression(max_iter=1000).fit(features, train["species"])
    batch = features.sample(1000, replace=True, random_state=0).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.joblib"
        joblib.dump(model, path)
        started = time.perf_counter()
        with ModelRunner("auto") as runner:
            remote = runner.load(path)
            start_ms = (time.perf_counter() - started) * 1000
            print(f"runner: {runner.isolation.line}")
            print(f"start and first load: {start_ms:.0f} ms")
            for label, x, calls in (("1 row", features.iloc[:1], args.calls),
                                    ("1,000 rows", batch, max(args.calls // 10, 20))):  # fmt: skip
                here = per_call_ms(model.predict_proba, x, calls)
                there = per_call_ms(remote.predict_proba, x, calls)
                here = min(here, per_call_ms(model.predict_proba, x, calls))
                there = min(there, per_call_ms(remote.predict_proba, x, calls))
                print(
                    f"{label}: in process {here:.3f} ms, through the runner {there:.3f} ms "
                    f"(+{there - here:.3f} ms, {there / here:.2f}x)"
                )


if __name__ == "__main__":
    main()
