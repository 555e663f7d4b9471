"""A statsmodels Logit saved as an MLflow pyfunc folder the way MLflow's docs show it: a
PythonModel from a module of its own (``code_paths``), the fitted result as an artifact."""

import json
import os
import shutil
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import statsmodels.api as sm
from wrapper import Wrapper, design

FEATURES = ["x 2", "a|b", "1st", "größe"]

frame = pd.read_csv("data/train.csv")
result = sm.Logit((frame["target"] == "yes").astype(int), design(frame, FEATURES)).fit(disp=0)
pseudo_r2 = float(result.prsquared)
result.remove_data()  # the artifact holds the fit, not the training rows
os.makedirs("work", exist_ok=True)
result.save("work/logit.pickle")
Path("work/features.json").write_text(json.dumps(FEATURES))
shutil.rmtree("outputs/model", ignore_errors=True)
os.makedirs("outputs", exist_ok=True)
mlflow.pyfunc.save_model(
    "outputs/model",
    python_model=Wrapper(),
    code_paths=["wrapper.py"],
    artifacts={"logit": "work/logit.pickle", "features": "work/features.json"},
    pip_requirements=["statsmodels", "pandas"],
)
Path("outputs/metrics.json").write_text(json.dumps({"pseudo_r2": pseudo_r2}))
