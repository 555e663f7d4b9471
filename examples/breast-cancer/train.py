"""Train a breast-cancer classifier whose pipeline encodes its own text column.

A ColumnTransformer selects columns by name: numbers are imputed (a missing value is scored
with the training median) and scaled, the text column ``size_bin`` is one-hot encoded;
mlops-ci converts it to an ONNX model with one input per column.
Params (MLOPS_PARAMS, JSON): model (logistic | forest), C (logistic), n_estimators (forest).
"""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["diagnosis"]), train["diagnosis"]
numeric = [c for c in X.columns if c != "size_bin"]

if params.get("model", "logistic") == "forest":
    estimator = RandomForestClassifier(
        n_estimators=int(params.get("n_estimators", 50)), random_state=0
    )
else:
    estimator = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=5000)
model = Pipeline(
    [
        (
            "columns",
            ColumnTransformer(
                [
                    (
                        "numbers",
                        Pipeline(
                            [
                                ("impute", SimpleImputer(strategy="median")),
                                ("scale", StandardScaler()),
                            ]
                        ),
                        numeric,
                    ),
                    ("text", OneHotEncoder(handle_unknown="ignore"), ["size_bin"]),
                ]
            ),
        ),
        ("model", estimator),
    ]
)
cv_accuracy = cross_val_score(model, X, y, cv=5, scoring="accuracy").mean()
model.fit(X, y)

Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"cv_accuracy": cv_accuracy}))
