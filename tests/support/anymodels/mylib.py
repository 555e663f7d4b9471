"""Pre- and post-processing of the pyfunc models: a local module the training command hands to
MLflow as ``code_paths`` (it travels in the model folder's code/, never on PYTHONPATH)."""

import numpy as np
import pandas as pd

NUMBERS = ["x1", "x 2", "a|b", "1st", "größe"]
COLOURS = ["red", "green", "blue", "dark blue"]


def fit_state(frame: pd.DataFrame) -> dict:
    """What preparing rows needs of the training data: each number's median and spread."""
    return {c: (float(frame[c].median()), float(frame[c].std()) or 1.0) for c in NUMBERS}


def prepare(frame: pd.DataFrame, state: dict) -> np.ndarray:
    """Numbers standardised (a gap is the median), the colour one-hot (a gap is none)."""
    columns = []
    for name in NUMBERS:
        median, spread = state[name]
        values = pd.to_numeric(frame[name], errors="coerce").astype(float)
        columns.append((values.fillna(median).to_numpy() - median) / spread)
    colour = frame["colour"].astype(object)
    columns += [(colour == c).to_numpy(float) for c in COLOURS]
    return np.column_stack(columns)


def probabilities(proba: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
    """A column per class, named by its label."""
    return pd.DataFrame(np.asarray(proba, float), columns=[str(c) for c in classes])
