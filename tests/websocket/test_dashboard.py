"""The dashboard's state lists each WebSocket API with the connections open in this process."""

from __future__ import annotations

from framework import App, Connection
from framework.testing import TestApp


async def test_dashboard_state_counts_open_connections_per_api() -> None:
    """Two clients of one API and none of the other: the state says 2 and 0, then 0 and 0."""
    app = App("dash-ws")

    @app.websocket("/chat", "say")
    async def say(conn: Connection) -> None: ...

    @app.websocket("/feed", "$connect")
    async def feed(conn: Connection) -> None: ...

    async with TestApp(app) as t:
        async with t.websocket("/chat"), t.websocket("/chat"):
            state = (await t.http.get("/_framework/dashboard/state")).json()
            assert state["websockets"] == [
                {"path": "/chat", "route_selection": "action", "routes": ["say"], "open": 2},
                {"path": "/feed", "route_selection": "action", "routes": ["$connect"], "open": 0},
            ]
        state = (await t.http.get("/_framework/dashboard/state")).json()
    assert [w["open"] for w in state["websockets"]] == [0, 0]
