"""A statsmodels Logit behind MLflow's pyfunc, loaded from the folder's artifacts (the fitted
result and its columns); this module travels in the folder (``code_paths``)."""

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd


def design(frame, features):
    import statsmodels.api as sm

    return sm.add_constant(frame[features].astype(float), has_constant="add")


class Wrapper(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import statsmodels.api as sm

        self.result = sm.load(context.artifacts["logit"])
        self.features = json.loads(Path(context.artifacts["features"]).read_text())

    def predict(self, context, model_input, params=None):
        yes = np.asarray(self.result.predict(design(model_input, self.features)), dtype=float)
        return pd.DataFrame({"no": 1 - yes, "yes": yes})
