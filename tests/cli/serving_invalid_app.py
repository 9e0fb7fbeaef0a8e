"""An app whose route options are invalid: importing it fails at the decorator, naming the
handler, so ``framework run`` exits with that error before any port opens."""

from __future__ import annotations

from framework import App

app = App("invalid")


@app.route("/orders", methods=["POST"], cache=60)
async def create_order() -> None:
    """cache= on a POST route: refused at the decorator."""
