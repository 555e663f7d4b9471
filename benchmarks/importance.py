"""Permutation importance on a 100,000-row evaluation set: the seeded sample against all rows.

A random forest trained on the iris example scores 100,000 rows drawn (with noise) from its
test data; `mlops_ci.evaluation.importance.permutation` runs
with `evaluate.importance.sample_rows` at its
default (2,000) and at 100,000 (every row), in the same run. Prints seconds of each, their
ratio, and how far the sampled means are from the full ones (the ranking is what the report
shows).

Run: python benchmarks/importance.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from mlops_ci.evaluation.data import EvaluationData
from mlops_ci.evaluation.importance import Settings, permutation

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    train = pd.read_csv(ROOT / "examples" / "iris" / "data" / "train.csv")
    test = pd.read_csv(ROOT / "examples" / "iris" / "data" / "test.csv")
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(
        train.drop(columns=["species"]), train["species"]
    )
    rng = np.random.default_rng(0)
    big = test.sample(args.rows, replace=True, random_state=0).reset_index(drop=True)
    features = big.drop(columns=["species"])
    features = features + rng.normal(0, 0.05, features.shape)
    data = EvaluationData("synthetic.csv", "-", features, big["species"])
    rows = []
    for sample_rows in (2_000, args.rows):
        settings = Settings("classification", "f1_macro", 5, sample_rows, 0)
        started = time.perf_counter()
        found = permutation(model, data, settings, "candidate")
        rows.append((sample_rows, time.perf_counter() - started, found))
    (_, fast, sampled), (_, slow, full) = rows
    print(f"{'sample_rows':>12}{'rows used':>11}{'seconds':>9}")
    for sample_rows, seconds, found in rows:
        print(f"{sample_rows:>12,}{found.rows:>11,}{seconds:>9.2f}")
    gap = max(abs(sampled.means[f] - full.means[f]) for f in full.means)
    print(
        f"sampled / all rows: {fast / slow:.3f}x the time; largest gap in a mean {gap:.4f}; "
        f"same ranking: {sampled.ranks() == full.ranks()}"
    )


if __name__ == "__main__":
    main()
