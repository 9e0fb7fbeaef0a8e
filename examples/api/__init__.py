"""An API with the gateway's features: authorizers, usage plans, throttles, a cache, versions.

Run it on the memory backend (HTTP on http://127.0.0.1:8000, the interactive page at /docs):

    FRAMEWORK_API_JWT_SECRET=$(openssl rand -hex 32) framework run examples.api:app

Without ``FRAMEWORK_API_JWT_SECRET`` the JWT route verifies against a random secret nobody
knows (so it accepts no token at all) and a warning says so; a secret under 32 bytes is refused.

Metrics are at /metrics and the OpenAPI document at /openapi.json.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from pydantic import BaseModel

from framework import App, ConfigError
from framework.gateway import (
    APIKey,
    APIKeyAuth,
    Cache,
    CustomAuth,
    JWTAuth,
    JWTKey,
    Principal,
    Throttle,
    UsagePlan,
)

app = App("api")

# --8<-- [start:api_keys]
api_keys = APIKeyAuth(
    {
        # A key mapped to its owner has no limits; an APIKey carries a usage plan.
        "demo-key-free": APIKey("free-team", UsagePlan(rate=2, burst=5, quota=1_000)),
        "demo-key-partner": APIKey("partner", UsagePlan(rate=50, burst=100), {"tier": "gold"}),
        "demo-key-internal": "ops",
    },
    header="X-API-Key",
)


@app.route("/reports/{report_id}", auth=api_keys, cache=Cache(ttl=60, max_entries=500))
async def report(report_id: int, principal: Principal) -> dict[str, Any]:
    """A report, cached per key for a minute."""
    return {"report": report_id, "for": principal.id, "tier": principal.claims.get("tier")}


# --8<-- [end:api_keys]
# --8<-- [start:jwt]
UNCONFIGURED = "FRAMEWORK_API_JWT_SECRET is not set: PUT /me accepts no token until it is"


def jwt_secret() -> str:
    """The HS256 secret from FRAMEWORK_API_JWT_SECRET; never a default anyone could read."""
    secret = os.environ.get("FRAMEWORK_API_JWT_SECRET")
    if not secret:
        # A logger under "framework": `framework run` renders it like its own start lines.
        logging.getLogger("framework.examples.api").warning(
            "jwt.unconfigured",
            extra={"fields": {"detail": UNCONFIGURED}},
        )
        return secrets.token_hex(32)  # known to nobody, so no token verifies
    if len(secret.encode()) < 32:
        raise ConfigError("FRAMEWORK_API_JWT_SECRET must be at least 32 bytes (RFC 7518 3.2)")
    return secret


jwt_auth = JWTAuth(
    JWTKey(jwt_secret(), "HS256"),
    issuer="https://auth.example.com",
    audience="api",
    leeway=5,
)


class Profile(BaseModel):
    name: str
    email: str


@app.route("/me", methods=["PUT"], auth=jwt_auth)
async def update_me(profile: Profile, principal: Principal) -> dict[str, Any]:
    """Update the caller's profile; the verified claims say who they are."""
    return {"sub": principal.id, "scope": principal.claims.get("scope"), "name": profile.name}


# --8<-- [end:jwt]
# --8<-- [start:custom]
async def check_session(token: str) -> Principal | None:
    """Ask the session store (here, a dict) who holds ``token``; None refuses it."""
    session = SESSIONS.get(token)
    return None if session is None else Principal(session["user"], session)


SESSIONS: dict[str, dict[str, Any]] = {"session-1": {"user": "erin", "roles": ["support"]}}


@app.route("/tickets", auth=CustomAuth(check_session, ttl=30))
async def tickets(principal: Principal) -> dict[str, Any]:
    """The caller's tickets; the session store is asked at most every 30 s per token."""
    return {"user": principal.id, "roles": principal.claims["roles"]}


# --8<-- [end:custom]
# --8<-- [start:throttle]
@app.route(
    "/search",
    throttle=[Throttle(rate=100, burst=200), Throttle(rate=5, burst=10, per="client")],
    cache=10,
)
async def search(q: str) -> dict[str, Any]:
    """A search: at most 100/s for everyone, 5/s per client address, cached 10 s."""
    return {"q": q, "hits": []}


# --8<-- [end:throttle]
# --8<-- [start:versions]
@app.route("/prices/{sku}")
async def price_v1(sku: str) -> dict[str, Any]:
    """Version 1: a bare number."""
    return {"sku": sku, "price": 10}


v2 = app.router("/catalog", version="v2", auth=api_keys, throttle=Throttle(rate=20, per="key"))


@v2.route("/prices/{sku}")
async def price_v2(sku: str, principal: Principal) -> dict[str, Any]:
    """Version 2, under /v2/catalog: an amount and a currency, for key holders only."""
    return {"sku": sku, "price": {"amount": "10.00", "currency": "EUR"}, "for": principal.id}


# --8<-- [end:versions]
