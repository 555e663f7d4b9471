"""Model files of each framework load as estimators (and convert to ONNX with parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlops_ci.model.features import FeatureSchema
from mlops_ci.model.files import load_model_file
from mlops_ci.packaging import convert, sessions
from tests.support.frames import Y_CLASS, Y_VALUE, X


def test_xgboost_and_lightgbm_own_model_files_load_as_estimators(tmp_path: Path) -> None:
    import lightgbm
    import xgboost

    xgb = xgboost.XGBClassifier(n_estimators=10, max_depth=2).fit(X, Y_CLASS)
    xgb.save_model(tmp_path / "model.json")
    loaded = load_model_file(tmp_path / "model.json", "classification")
    assert np.allclose(loaded.predict_proba(X), xgb.predict_proba(X))

    lgb = lightgbm.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, Y_VALUE)
    lgb.booster_.save_model(tmp_path / "model.txt")
    loaded = load_model_file(tmp_path / "model.txt", "regression")
    assert np.allclose(loaded.predict(X), lgb.predict(X))

    clf = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, Y_CLASS)
    clf.booster_.save_model(tmp_path / "clf.txt")
    loaded = load_model_file(tmp_path / "clf.txt", "classification")
    assert np.allclose(loaded.predict_proba(X), clf.predict_proba(X))
    assert (loaded.predict(X) == clf.predict(X)).all()
    # Both convert to ONNX and keep parity.
    for model in (loaded, xgb):
        converted = convert.convert_sklearn(model, X, None)
        sess = sessions.session(converted.onnx, 1, "all")
        feeds = convert.frame_feeds(converted.layout, FeatureSchema.of_frame(X), X)
        parity = convert.check_parity(
            convert.native_outputs(model, X),
            convert.onnx_outputs(sess, feeds),
            convert.Tolerance.for_task("classification", None, None, 0.0),
        )
        assert parity.passed, parity
