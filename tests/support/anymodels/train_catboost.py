"""CatBoost with the colour as a native categorical feature, saved with joblib."""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from catboost import CatBoostClassifier

FEATURES = ["x1", "x 2", "a|b", "1st", "größe", "colour"]
frame = pd.read_csv("data/train.csv", keep_default_na=False, na_values=[""])
model = CatBoostClassifier(
    cat_features=["colour"], iterations=30, random_seed=0, verbose=0, allow_writing_files=False
)
model.fit(frame[FEATURES], frame["target"])
os.makedirs("outputs", exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"rows": len(frame)}))
