"""The served /openapi.json describes what the service does: Schemathesis (the CLI, as an
operator runs it) generates valid and invalid requests from it against a real `serve` process and
checks every answer against it. Bounded examples, a fixed seed: the same requests every run."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mlops_ci.serve.front import FORWARDED
from tests.integration.conftest import Packaged
from tests.support.serve_helpers import ADMIN_TOKEN, assert_conforms, schemathesis, serving

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_conformance_failure(packaged: Packaged, tmp_path: Path) -> None:
    args = ("--model-dir", f"{packaged.v1}=70", "--model-dir", f"{packaged.v2}=30")
    with serving(*args, cwd=tmp_path) as srv:
        doc = httpx.get(f"{srv.url}/openapi.json").json()
        run = schemathesis(srv.url, tmp_path)
        assert_conforms(run)
        # it tested every operation, both ways (valid and invalid requests)
        assert "Selected: 15/15" in run.stdout and "Tested: 15" in run.stdout, run.stdout[-3000:]
        generated = int(run.stdout.split(" generated")[0].rsplit("\n", 1)[-1].strip())
        assert generated >= 500, run.stdout[-2000:]
        healthy = httpx.post(f"{srv.url}/score", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]})
        assert healthy.status_code == 200
    assert "Traceback" not in srv.log() and "internal error" not in srv.log()
    # what the document states, per the models loaded
    score = doc["paths"]["/score"]["post"]
    assert {"400", "404", "413", "415", "422"} <= set(score["responses"])
    version = doc["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]["parameters"][1]
    assert version["schema"]["enum"] == ["1", "2"]
    body = json.dumps(score["requestBody"])
    for column in ("sepal_length", "petal_width"):
        assert column in body
    assert doc["paths"]["/admin/traffic"]["put"]["security"] == [{"bearer": []}]
    # The docker front forwards exactly the client routes the service documents.
    client_routes = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        if not path.startswith("/admin/") and path != "/metrics"
        for method in item
    }
    assert client_routes == {
        (p, m) for p, methods in FORWARDED for m in methods if p != "/openapi.json"
    }


def test_a_version_loaded_while_serving_appears_in_the_document(
    packaged: Packaged, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serving("--model-dir", str(packaged.v1), cwd=tmp_path) as srv:
        pins = httpx.get(f"{srv.url}/openapi.json").json()["paths"]["/score"]["post"]
        assert pins["parameters"][0]["schema"]["enum"] == ["1"]
        loaded = httpx.post(
            f"{srv.url}/admin/models", json={"path": str(packaged.v2)}, headers=admin
        )
        assert loaded.status_code == 200, loaded.text
        pins = httpx.get(f"{srv.url}/openapi.json").json()["paths"]["/score"]["post"]
        assert pins["parameters"][0]["schema"]["enum"] == ["1", "2"]
        # a 405 names the methods the path takes (RFC 9110)
        wrong = httpx.request("TRACE", f"{srv.url}/admin/traffic")
        assert wrong.status_code == 405 and set(wrong.headers["allow"].split(", ")) == {
            "GET",
            "PUT",
        }
        assert wrong.json()["error"]
