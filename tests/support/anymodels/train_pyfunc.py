"""Fit a model on prepared rows and save it as an MLflow pyfunc folder with its local module."""

import json
import os
import shutil
import sys
from pathlib import Path

import mlflow.pyfunc
import mylib
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge


class Wrapper(mlflow.pyfunc.PythonModel):
    """Prepares the rows (mylib), scores them, answers a frame of probabilities per class or
    a Series of values."""

    def __init__(self, state, model):
        self.state = state
        self.model = model

    def predict(self, context, model_input, params=None):
        x = mylib.prepare(model_input, self.state)
        if hasattr(self.model, "predict_proba"):
            return mylib.probabilities(self.model.predict_proba(x), self.model.classes_)
        return pd.Series(self.model.predict(x), name="price")


task = sys.argv[1]
frame = pd.read_csv("data/train.csv", keep_default_na=False, na_values=[""])
state = mylib.fit_state(frame)
model = LogisticRegression(max_iter=500) if task == "classification" else Ridge()
model.fit(mylib.prepare(frame, state), frame["target"])
os.makedirs("outputs", exist_ok=True)
shutil.rmtree("outputs/model", ignore_errors=True)
mlflow.pyfunc.save_model(
    "outputs/model",
    python_model=Wrapper(state, model),
    code_paths=["mylib.py"],
    pip_requirements=["scikit-learn", "pandas"],
    input_example=frame[mylib.NUMBERS + ["colour"]].dropna().head(3)
    if task == "classification"
    else None,
)
Path("outputs/metrics.json").write_text(json.dumps({"rows": len(frame)}))
