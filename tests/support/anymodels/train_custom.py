"""A scikit-learn Pipeline with a transformer from custom.py, saved with joblib."""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from custom import SignedLog
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

NUMBERS = ["x1", "x 2", "a|b", "1st", "größe"]
frame = pd.read_csv("data/train.csv", keep_default_na=False, na_values=[""])
text = make_pipeline(
    SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
)
model = make_pipeline(
    ColumnTransformer([("num", SignedLog(), NUMBERS), ("txt", text, ["colour"])]),
    LogisticRegression(max_iter=500),
)
model.fit(frame[NUMBERS + ["colour"]], frame["target"])
os.makedirs("outputs", exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"rows": len(frame)}))
