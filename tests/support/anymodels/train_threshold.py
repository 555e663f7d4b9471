"""A classifier whose decision threshold is tuned: yes from a probability of 0.3 on."""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMBERS = ["x1", "x 2", "a|b", "1st", "größe"]
frame = pd.read_csv("data/train.csv", keep_default_na=False, na_values=[""])
prepare = ColumnTransformer(
    [
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMBERS),
        ("txt", OneHotEncoder(handle_unknown="ignore"), ["colour"]),
    ]
)
base = make_pipeline(prepare, LogisticRegression(max_iter=500))
model = FixedThresholdClassifier(base, threshold=0.3, pos_label="yes")
model.fit(frame[NUMBERS + ["colour"]], frame["target"])
os.makedirs("outputs", exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"rows": len(frame)}))
