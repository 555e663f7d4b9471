"""The MLflow registry adapter (mlops_ci/registry/mlflow.py) against a loopback HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_server_answering_500_every_time_is_not_called_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading

    from mlops_ci.errors import ServiceError
    from mlops_ci.registry.mlflow import MlflowRegistry

    class Always500(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Always500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    try:
        reg = MlflowRegistry(f"http://127.0.0.1:{server.server_address[1]}", str(tmp_path))
        with pytest.raises(ServiceError) as caught:
            reg.get_version("m", "1")
    finally:
        server.shutdown()
    assert "answered HTTP 500 to every attempt (1 retries" in str(caught.value)
    assert "cannot connect" not in str(caught.value) and caught.value.exit_code == 3
