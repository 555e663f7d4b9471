"""serve without the serve extra names it, as one line and exit 2."""

from __future__ import annotations

import pytest

from tests.support.extras import hide
from tests.support.helpers import run_cli


@pytest.mark.timeout(60)
def test_serve_without_the_serve_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "fastapi", "uvicorn")
    code = run_cli("serve", "--model-dir", "/nonexistent")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: mlops-ci serve needs fastapi, uvicorn (the serve extra)" in err
