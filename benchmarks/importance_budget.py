"""Permutation importance on 250 features: the time budget against the unbounded settings.

A gradient-boosted forest fitted on 2,000 generated rows of 250 number columns (10 of them
informative); `mlops_ci.evaluation.importance.permutation` runs
with the defaults (5 repeats, 2,000 rows)
once without a budget (max_seconds 0) and once with the default budget (10 s), in the same run.
Prints each one's seconds, the plan the budget chose (its note), and how many of the unbounded
top-10 features the budgeted run also ranks in its top 10.

Run: python benchmarks/importance_budget.py [--features 250] [--budget 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from mlops_ci.evaluation.data import EvaluationData
from mlops_ci.evaluation.importance import Settings, groups_of, permutation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=250)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=10.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows * 2, args.features))
    y = (x[:, :10] @ rng.normal(size=10) > 0).astype(int)
    columns = [f"f{i:03d}" for i in range(args.features)]
    frame = pd.DataFrame(x, columns=columns)
    model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    model.fit(frame.iloc[: args.rows], y[: args.rows])
    data = EvaluationData("synthetic.csv", "-", frame.iloc[args.rows :], pd.Series(y[args.rows :]))
    found = {}
    for budget in (0.0, args.budget):
        settings = Settings("classification", "f1_macro", 5, 2000, 0, budget)
        started = time.perf_counter()
        found[budget] = (
            permutation(model, data, settings, "candidate"),
            time.perf_counter() - started,
        )
    full, full_s = found[0.0]
    bounded, bounded_s = found[args.budget]
    print(f"{args.features} features, {full.rows:,} rows, 5 repeats")
    print(f"no budget:        {full_s:6.1f} s")
    print(f"budget {args.budget:g} s:     {bounded_s:6.1f} s  ({bounded_s / full_s:.2f}x)")
    assert bounded.plan is not None
    print(f"plan: {bounded.plan.note or 'as configured'}")
    top = {f for f, r in full.ranks().items() if r <= 10}
    members = groups_of(columns, bounded.plan.groups)  # a group's name -> its features
    ranked = sorted(bounded.means, key=lambda g: -bounded.means[g])
    covered = {f for g in ranked[:10] for f in members[g]}
    print(
        f"unbounded top-10 features inside the budgeted top 10 ({bounded.plan.groups} groups "
        f"of {args.features} features): {len(top & covered)} of 10"
    )


if __name__ == "__main__":
    main()
