"""Apps the serving tests run in a real `framework run` process."""

from __future__ import annotations

import anyio

from framework import App

app = App("serving")


@app.route("/ping")
async def ping() -> dict[str, bool]:
    """Answer at once."""
    return {"pong": True}


@app.route("/slow")
async def slow(seconds: float = 0.0) -> dict[str, float]:
    """Answer after ``seconds``: a handler slower than the read timeout is not cut off."""
    await anyio.sleep(seconds)
    return {"slept": seconds}


@app.route("/echo", methods=["POST"])
async def echo(body: dict[str, object]) -> dict[str, object]:
    """Answer with the body it read."""
    return body
