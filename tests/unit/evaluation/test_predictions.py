"""The predictions train records for compare: what it refuses to record."""

from __future__ import annotations


def test_the_evaluation_record_is_skipped_for_predictions_json_cannot_hold() -> None:
    from decimal import Decimal

    import pandas as pd

    from mlops_ci.evaluation.data import EvaluationData
    from mlops_ci.evaluation.predictions import record

    data = EvaluationData("e.csv", "abc", pd.DataFrame({"x": [1.0, 2.0]}), pd.Series([0, 1]))

    class Model:
        def __init__(self, out: list[object]) -> None:
            self.out = out

        def predict(self, x: object) -> list[object]:
            return self.out

    assert record(Model([Decimal(1), Decimal(2)]), data).text is None  # not JSON
    assert record(Model([float("nan"), 1.0]), data).text is None  # NaN is not JSON either
    assert record(Model([[1, 2], [3, 4]]), data).text is None  # not one value per row
    kept = record(Model(["a", "b"]), data).text
    assert kept is not None and '"predictions": ["a", "b"]' in kept
