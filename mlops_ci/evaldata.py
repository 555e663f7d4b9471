"""The evaluation data both models are scored on: read once, checked, fingerprinted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_ci.errors import InputError

if TYPE_CHECKING:
    from mlops_ci.config import Config


@dataclass(frozen=True)
class EvaluationData:
    path: str  # as written in mlops.yaml
    sha256: str
    features: Any  # pandas.DataFrame, columns in model order
    target: Any  # pandas.Series

    @property
    def rows(self) -> int:
        return len(self.features)


def load_evaluation(config: Config, nrows: int | None = None) -> EvaluationData:
    """Read evaluate.data; missing file, columns or rows are errors naming them."""
    import pandas as pd

    spec = config.evaluate
    path = config.resolve(spec.data)
    if not path.is_file():
        raise InputError(f"mlops.yaml: evaluate.data: file '{spec.data}' not found ({path})")
    try:
        frame = pd.read_csv(path, nrows=nrows)
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(
            f"{spec.data}: cannot be read as CSV: {str(err).splitlines()[0]}"
        ) from None
    columns = [str(c) for c in frame.columns]
    wanted = [spec.target, *spec.features]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(
            f"{spec.data}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"named in mlops.yaml evaluate (columns: {', '.join(columns)})"
        )
    if frame.empty:
        raise InputError(f"{spec.data}: has no rows to evaluate on")
    features = list(spec.features) or [c for c in columns if c != spec.target]
    if frame[spec.target].isna().any():
        raise InputError(f"{spec.data}: column '{spec.target}' (the target) has empty values")
    return EvaluationData(
        path=spec.data,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        features=frame[features],
        target=frame[spec.target],
    )
