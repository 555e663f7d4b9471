"""A transformer of the user's own, in a local module: listed in model.code_paths."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class SignedLog(BaseEstimator, TransformerMixin):
    """Gaps filled with the training median, then sign(x)·log(1 + |x|), then centred."""

    def fit(self, x, y=None):
        values = np.asarray(x, dtype=float)
        self.median_ = np.nanmedian(values, axis=0)
        self.centre_ = self._log(values).mean(axis=0)
        return self

    def _log(self, values):
        values = np.where(np.isnan(values), self.median_, values)
        return np.sign(values) * np.log1p(np.abs(values))

    def transform(self, x):
        return self._log(np.asarray(x, dtype=float)) - self.centre_
