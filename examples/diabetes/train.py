"""Train a regression of diabetes progression (targets 25-346).

Params (MLOPS_PARAMS, JSON): model (ridge | forest), alpha (ridge), n_estimators (forest).
"""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["target"]), train["target"]

if params.get("model", "ridge") == "forest":
    model = RandomForestRegressor(
        n_estimators=int(params.get("n_estimators", 100)), min_samples_leaf=3, random_state=0
    )
else:
    model = Ridge(alpha=float(params.get("alpha", 1.0)))
cv_r2 = cross_val_score(model, X, y, cv=5, scoring="r2").mean()
model.fit(X, y)

Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"cv_r2": cv_r2}))
