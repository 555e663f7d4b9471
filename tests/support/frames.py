"""A small numeric table and its class and value targets (seeded), to fit models on."""

from __future__ import annotations

import numpy as np
import pandas as pd

RNG = np.random.default_rng(0)


X = pd.DataFrame(RNG.normal(size=(200, 3)), columns=["a", "b", "c"])


Y_CLASS = (X["a"] + X["b"] > 0).astype(int)


Y_VALUE = 100 + 50 * X["a"] - 20 * X["c"]
