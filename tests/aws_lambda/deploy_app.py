"""An app whose module holds its own Lambda handler, for the template tests."""

from __future__ import annotations

from framework import App, Connection
from framework.aws import lambda_handler
from framework.gateway.auth import APIKeyAuth

app = App("deployed", mail_from="ops@deployed.example")


@app.route("/items/{item_id:int}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.on_queue("slow", visibility_timeout=120, batch_size=4, concurrency=1)
async def slow(body: str) -> None:
    pass


@app.on_queue("wide", concurrency=5000)
async def wide(body: str) -> None:
    pass


app.websocket_api("/live", route_selection="type")


@app.websocket("/live", "$connect", auth=APIKeyAuth({"k-1": "ann"}))
async def live_connect(conn: Connection) -> None:
    pass


@app.websocket("/live", "say")
async def live_say(text: str) -> str:
    return text


@app.websocket("/live", "$disconnect")
async def live_gone(conn: Connection) -> None:
    pass


handler = lambda_handler(app)

too_long = App("too-long")


@too_long.on_queue("batch", visibility_timeout=1800)
async def batch(body: str) -> None:
    pass
