"""The OpenAPI document at ``/schema`` is true to the real server (issue 11 item 7).

First what it must say (request bodies, a typed ``/health``, our ``error``/``status`` bodies,
the error statuses, the bearer scheme); then schemathesis generates requests from it against a
real ``aibridge serve`` with a token and checks every answer against it (all checks: no 5xx, no
undocumented status, content type or body, valid requests accepted, invalid ones refused,
requests without the token refused).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import BridgeProcess, run_bridge

TOKEN = "schema-token-0e7f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    env = {"AI_BRIDGE_AUTH_TOKEN": TOKEN, "AI_BRIDGE_RATE_MAX": "0", "AI_BRIDGE_HISTORY_LIMIT": "200"}
    with run_bridge(tmp_path_factory.mktemp("schema"), env) as process:
        yield process


@pytest.fixture(scope="module")
def schema(bridge: BridgeProcess) -> dict[str, Any]:
    response = httpx.get(f"{bridge.url}/schema/openapi.json", headers=AUTH)
    assert response.status_code == 200
    document = response.json()
    assert isinstance(document, dict)
    return document


def test_the_document_says_what_the_routes_do(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for route in ("/send", "/broadcast"):
        operation = paths[route]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["type"] == "object" and "payload" in body["properties"]
        assert {"400", "401", "413", "415", "422", "429", "503"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
    assert paths["/send"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "to"
    ]
    health = paths["/health"]["get"]
    assert "security" not in health
    ok = health["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["components"]["schemas"][ok["$ref"].rpartition("/")[2]]["type"] == "object"
    assert "503" in health["responses"]
    error = schema["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "status"}
    documented = {code for methods in paths.values() for op in methods.values() for code in op["responses"]}
    assert not any("detail" in str(s) for s in schema["components"]["schemas"].values())
    assert {"401", "429", "503"} <= documented
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }


def test_schemathesis_finds_no_violation_and_no_5xx(bridge: BridgeProcess, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{bridge.url}/schema/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-3000:]
    assert "passed" in output and " 0 passed" not in output
    # The bridge survived all of it, and logged no traceback.
    assert httpx.get(f"{bridge.url}/health").json()["status"] == "ok"
    assert "Traceback" not in bridge.log()
