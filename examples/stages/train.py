"""Stage `train`: fit a logistic regression on the featurized rows. Params (MLOPS_PARAMS): C,
max_iter."""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
train = pd.read_csv("data/features/train.csv")
X, y = train.drop(columns=["species"]), train["species"]
model = LogisticRegression(
    C=float(params.get("C", 1.0)), max_iter=int(params.get("max_iter", 1000))
)
cv_accuracy = cross_val_score(model, X, y, cv=5, scoring="accuracy").mean()
model.fit(X, y)

Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"cv_accuracy": cv_accuracy}))
