"""Stage `prepare`: clean the raw export (rows with a missing value, exact duplicates) and split
it into train and test rows, seeded. Params (MLOPS_PARAMS): test_size, seed."""

import json
import os
from pathlib import Path

import pandas as pd

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
raw = pd.read_csv("data/raw/iris.csv")
clean = raw.dropna().drop_duplicates().reset_index(drop=True)
test = clean.groupby("species", group_keys=False).sample(
    frac=float(params.get("test_size", 0.3)), random_state=int(params.get("seed", 0))
)
train = clean.drop(index=test.index)

out = Path("data/prepared")
out.mkdir(parents=True, exist_ok=True)
train.to_csv(out / "train.csv", index=False)
test.sort_index().to_csv(out / "test.csv", index=False)
print(f"prepare: {len(raw)} raw rows, {len(clean)} clean, {len(train)} train, {len(test)} test")
