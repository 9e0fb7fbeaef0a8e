"""`framework routes`: HTTP and WebSocket routes, with the authorizer guarding each."""

from __future__ import annotations

import json

from .conftest import framework


def test_routes_lists_http_and_websocket_routes_with_their_auth() -> None:
    """Text output has a line per HTTP route and per WebSocket route key, auth named."""
    result = framework("routes", "sockets_app:app")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines == [
        ["GET", "/reports", "sockets_app.reports", "auth=APIKeyAuth"],
        ["GET", "/health", "sockets_app.health"],
        ["WS", "/chat", "$connect", "sockets_app.join", "auth=JWTAuth"],
        ["WS", "/chat", "say", "sockets_app.say"],
        ["WS", "/alerts", "$connect", "sockets_app.watch", "auth=CustomAuth(sockets_app.ticket)"],
        ["WS", "/alerts", "$default", "sockets_app.fallback"],
    ]


def test_routes_json_has_websocket_routes_beside_the_http_ones() -> None:
    """--json keeps ``routes`` and adds ``websocket_routes`` (path, route key, handler, auth)."""
    result = framework("routes", "sockets_app:app", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert [(r["path"], r["auth"]) for r in listing["routes"]] == [
        ("/reports", "APIKeyAuth"),
        ("/health", None),
    ]
    assert listing["websocket_routes"][:2] == [
        {"path": "/chat", "route": "$connect", "handler": "sockets_app.join", "auth": "JWTAuth"},
        {"path": "/chat", "route": "say", "handler": "sockets_app.say", "auth": None},
    ]
