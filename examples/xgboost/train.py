"""Train an XGBoost classifier inside a scikit-learn Pipeline (model.flavor: xgboost).

The text column ``size_bin`` is ordinal-encoded by a ColumnTransformer; the numbers pass
through. The fitted Pipeline is saved with joblib like any scikit-learn model (an
``XGBClassifier`` alone, or the booster's own ``model.save_model("model.json")``, works too).
Params (MLOPS_PARAMS, JSON): n_estimators, max_depth, learning_rate.
"""

import json
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from xgboost import XGBClassifier

params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
train = pd.read_csv("data/train.csv")
X, y = train.drop(columns=["malignant"]), train["malignant"]
numeric = [c for c in X.columns if c != "size_bin"]

model = Pipeline(
    [
        (
            "columns",
            ColumnTransformer(
                [
                    ("numbers", "passthrough", numeric),
                    (
                        "text",
                        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                        ["size_bin"],
                    ),
                ]
            ),
        ),
        (
            "model",
            XGBClassifier(
                n_estimators=int(params.get("n_estimators", 50)),
                max_depth=int(params.get("max_depth", 3)),
                learning_rate=float(params.get("learning_rate", 0.1)),
                n_jobs=1,
            ),
        ),
    ]
)
cv_accuracy = cross_val_score(model, X, y, cv=5, scoring="accuracy").mean()
model.fit(X, y)

Path("outputs").mkdir(exist_ok=True)
joblib.dump(model, "outputs/model.joblib")
Path("outputs/metrics.json").write_text(json.dumps({"cv_accuracy": cv_accuracy}))
