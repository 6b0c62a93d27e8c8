"""The OpenAPI description in the package is the API the server routes: checked both ways."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from tictactoe.app import create_app
from tictactoe.errors import HTTP_STATUS

ROOT = Path(__file__).resolve().parent.parent
SPEC = json.loads((ROOT / "tictactoe" / "openapi.json").read_text(encoding="utf-8"))


def described_operations() -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in SPEC["paths"].items() for method in item}


def routed_operations(app: web.Application) -> set[tuple[str, str]]:
    """Every (path template, method) the router answers; HEAD comes free with each GET."""
    routed = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        assert path is not None, f"a resource the description cannot name: {info}"
        routed |= {(path, route.method) for route in resource if route.method != "HEAD"}
    return routed


def test_every_route_is_described_and_every_described_operation_is_routed(config):
    routed, described = routed_operations(create_app(config)), described_operations()
    assert routed - described == set(), "routes missing from tictactoe/openapi.json"
    assert described - routed == set(), "tictactoe/openapi.json describes routes the server does not have"


def _error_codes(response: dict) -> list[int]:
    while "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    return schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]


def test_every_described_error_has_the_status_of_its_protocol_codes():
    every_code = SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert sorted(every_code) == sorted(HTTP_STATUS)
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    codes = _error_codes(response)
                    # An unknown route or file is 404 with code 100 (docs/protocol.md): the one exception.
                    unknown_route = codes == [100] and status == "404"
                    assert codes and (unknown_route or all(HTTP_STATUS[c] == int(status) for c in codes)), (
                        method,
                        path,
                        status,
                    )


async def test_the_server_serves_the_description_it_ships(client):
    response = await client.get("/api/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == SPEC
    assert SPEC["openapi"].startswith("3.") and SPEC["info"]["version"] == __import__("tictactoe").__version__
