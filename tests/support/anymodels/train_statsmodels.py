"""A statsmodels Logit fitted here, wrapped in an MLflow PythonModel (class probabilities)."""

import json
import os
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import statsmodels.api as sm

FEATURES = ["x 2", "a|b", "1st", "größe"]


class Logit(mlflow.pyfunc.PythonModel):
    def __init__(self, result):
        self.result = result

    def predict(self, context, model_input, params=None):
        x = sm.add_constant(model_input[FEATURES].astype(float), has_constant="add")
        p = np.asarray(self.result.predict(x), dtype=float)
        return pd.DataFrame({"no": 1 - p, "yes": p})


frame = pd.read_csv("data/train.csv")
result = sm.Logit((frame["target"] == "yes").astype(int), sm.add_constant(frame[FEATURES])).fit(
    disp=0
)
os.makedirs("outputs", exist_ok=True)
shutil.rmtree("outputs/model", ignore_errors=True)
mlflow.pyfunc.save_model(
    "outputs/model", python_model=Logit(result), pip_requirements=["statsmodels", "pandas"]
)
Path("outputs/metrics.json").write_text(json.dumps({"pseudo_r2": float(result.prsquared)}))
