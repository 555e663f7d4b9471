"""Free text through a TfidfVectorizer beside the numbers, in one ColumnTransformer."""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

NUMBERS = ["x1", "x 2", "a|b"]
frame = pd.read_csv("data/train.csv", keep_default_na=False, na_values=[""])
model = make_pipeline(
    ColumnTransformer(
        [
            ("words", TfidfVectorizer(), "note"),
            ("num", SimpleImputer(strategy="median"), NUMBERS),
        ]
    ),
    LogisticRegression(max_iter=500),
)
model.fit(frame[NUMBERS + ["note"]], frame["target"])
os.makedirs("outputs", exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"rows": len(frame)}))
