"""Train a LightGBM regression of diabetes progression (model.flavor: lightgbm).

The fitted ``LGBMRegressor`` is saved with joblib like any scikit-learn model (inside a
Pipeline works too). The data is examples/diabetes' (written by its prepare_data.py).
Params (MLOPS_PARAMS, JSON): n_estimators, num_leaves, learning_rate.
"""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.model_selection import cross_val_score

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["target"]), train["target"]

model = LGBMRegressor(
    n_estimators=int(params.get("n_estimators", 100)),
    num_leaves=int(params.get("num_leaves", 8)),
    learning_rate=float(params.get("learning_rate", 0.05)),
    min_child_samples=10,
    n_jobs=1,
    verbose=-1,
)
cv_r2 = cross_val_score(model, X, y, cv=5, scoring="r2").mean()
model.fit(X, y)

Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"cv_r2": cv_r2}))
