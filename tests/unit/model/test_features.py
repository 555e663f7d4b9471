"""The feature contract: a missing text reaches the native model and ONNX as each expects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_ci.packaging import convert
from tests.support.payloads import NULLABLE_TEXT


def test_missing_text_reaches_each_runtime_as_it_expects() -> None:
    """The native model gets NaN (as read_csv gives compare), an ONNX graph the empty string."""
    from mlops_ci.model.features import native_frame, table_of_frame

    frame = pd.DataFrame({"colour": ["red", np.nan], "size": [1.0, np.nan]})
    table = table_of_frame(NULLABLE_TEXT, frame)
    assert table["colour"].tolist() == ["red", None]
    native = native_frame(NULLABLE_TEXT, table)
    assert native["colour"].isna().tolist() == [False, True]
    # An empty text, as /score may send it, reaches the native model as missing too.
    sent = {"colour": np.array(["", "red", None], dtype=object), "size": np.ones(3)}
    assert native_frame(NULLABLE_TEXT, sent)["colour"].isna().tolist() == [True, False, True]
    assert native["size"].dtype == np.float64
    feeds = convert.table_feeds(NULLABLE_TEXT, table)
    assert feeds["colour"].ravel().tolist() == ["red", ""]
    assert feeds["size"].dtype == np.float32 and np.isnan(feeds["size"][1, 0])
