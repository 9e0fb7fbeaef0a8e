"""Authorizers: API keys with usage plans, JWT bearer tokens, custom async functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.requests import Request

from framework import App
from framework.exceptions import DeclarationError
from framework.gateway.auth import (
    APIKey,
    APIKeyAuth,
    CustomAuth,
    JWTAuth,
    JWTKey,
    Principal,
)
from framework.gateway.throttle import UsagePlan
from tests.gateway.helpers import FakeClock, client

SECRET = "s3cret-hmac-key-of-at-least-32-bytes!"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
NOW = 1_700_000_000.0


def token(
    claims: dict[str, Any] | None = None, key: Any = SECRET, alg: str = "HS256", **hdr: Any
) -> str:
    """Return a signed JWT with sensible claims for these tests, overridden by ``claims``."""
    body = {"sub": "alice", "iss": "https://issuer", "aud": "api", "exp": NOW + 60, "role": "admin"}
    body.update(claims or {})
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers=hdr or None
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(alg: str, secret: bytes) -> str:
    """Return a token with header ``alg`` signed by HMAC-SHA256 over ``secret`` (or unsigned)."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = {"sub": "mallory", "iss": "https://issuer", "aud": "api", "exp": NOW + 60}
    payload = _b64(json.dumps(claims).encode())
    signing = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(secret, signing, hashlib.sha256).digest()) if secret else ""
    return f"{header}.{payload}.{signature}"


def jwt_app(*keys: JWTKey) -> App:
    app = App("jwt")
    auth = JWTAuth(*keys, issuer="https://issuer", audience="api")

    @app.route("/me", auth=auth)
    async def me(principal: Principal) -> dict[str, Any]:
        return {"id": principal.id, "role": principal.claims["role"], "scheme": principal.scheme}

    return app


def key_app() -> App:
    app = App("keys")
    auth = APIKeyAuth(
        {
            "key-free": "free-user",
            "key-gold": APIKey("gold-user", UsagePlan(rate=1, burst=2, quota=3), {"tier": "gold"}),
        }
    )

    @app.route("/a", auth=auth)
    async def a(principal: Principal, request: Request) -> dict[str, Any]:
        assert request.state.principal is principal
        return {"id": principal.id, "claims": dict(principal.claims)}

    @app.route("/b", auth=auth)
    async def b() -> str:
        return "b"

    return app


async def test_missing_api_key_is_401_with_www_authenticate() -> None:
    """A request without the key header is 401 and says which header to send."""
    async with client(key_app()) as c:
        r = await c.get("/a")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'


async def test_unknown_api_key_is_403_and_not_echoed() -> None:
    """A wrong key is 403, and the answer never repeats the key."""
    async with client(key_app()) as c:
        r = await c.get("/a", headers={"X-API-Key": "guessed-key"})
    assert r.status_code == 403
    assert "guessed-key" not in r.text


async def test_api_key_owner_and_claims_reach_the_handler() -> None:
    """A valid key gives the handler its owner as Principal, also in request.state."""
    async with client(key_app()) as c:
        r = await c.get("/a", headers={"X-API-Key": "key-gold"})
    assert r.json() == {"id": "gold-user", "claims": {"tier": "gold"}}


async def test_usage_plan_rate_over_burst_is_429_with_retry_after() -> None:
    """A key spending its burst is refused with 429 and Retry-After until tokens refill."""
    clock = FakeClock()
    async with client(key_app(), clock) as c:
        statuses = [
            (await c.get("/a", headers={"X-API-Key": "key-gold"})).status_code for _ in range(3)
        ]
        refused = await c.get("/a", headers={"X-API-Key": "key-gold"})
        clock.advance(1.0)
        again = await c.get("/b", headers={"X-API-Key": "key-gold"})
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"] == "1"
    assert again.status_code == 200


async def test_usage_plan_quota_is_shared_by_routes_and_resets_next_utc_day() -> None:
    """The daily quota counts every route of the authorizer and starts over at UTC midnight."""
    clock = FakeClock(86_400.0 * 20_000 + 100)
    async with client(key_app(), clock) as c:
        for path in ("/a", "/b", "/a"):
            clock.advance(5)
            assert (await c.get(path, headers={"X-API-Key": "key-gold"})).status_code == 200
        clock.advance(5)
        over = await c.get("/b", headers={"X-API-Key": "key-gold"})
        clock.advance(86_400)
        next_day = await c.get("/b", headers={"X-API-Key": "key-gold"})
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) == 86_400 - 120
    assert next_day.status_code == 200


async def test_key_without_a_plan_is_never_throttled() -> None:
    """A key mapped to a plain owner id has no limits."""
    async with client(key_app()) as c:
        codes = {
            (await c.get("/a", headers={"X-API-Key": "key-free"})).status_code for _ in range(20)
        }
    assert codes == {200}


@pytest.mark.parametrize(
    ("key", "verify", "alg"),
    [
        pytest.param(SECRET, SECRET, "HS256", id="HS256"),
        pytest.param(RSA_KEY, RSA_PUBLIC_PEM, "RS256", id="RS256"),
        pytest.param(EC_KEY, EC_KEY.public_key(), "ES256", id="ES256"),
    ],
)
async def test_jwt_claims_reach_the_handler(key: Any, verify: Any, alg: str) -> None:
    """A token signed with the route's key and algorithm gives the handler its claims."""
    async with client(jwt_app(JWTKey(verify, alg)), FakeClock(NOW)) as c:
        r = await c.get("/me", headers=bearer(token(key=key, alg=alg)))
    assert r.json() == {"id": "alice", "role": "admin", "scheme": "jwt"}


async def test_missing_bearer_token_is_401_with_bearer_challenge() -> None:
    """No Authorization header, or one without a Bearer token, is 401 with WWW-Authenticate."""
    async with client(jwt_app(JWTKey(SECRET, "HS256"))) as c:
        none = await c.get("/me")
        basic = await c.get("/me", headers={"Authorization": "Basic YTpi"})
    assert (none.status_code, basic.status_code) == (401, 401)
    assert none.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"exp": NOW - 1}, "expired", id="expired"),
        pytest.param({"exp": None}, "exp", id="no-exp"),
        pytest.param({"iss": "https://evil"}, "issuer", id="issuer"),
        pytest.param({"aud": "other"}, "audience", id="audience"),
        pytest.param({"sub": None}, "sub", id="no-subject"),
    ],
)
async def test_token_failing_a_check_is_403(claims: dict[str, Any], reason: str) -> None:
    """An expired token, or one with the wrong issuer or audience or no exp, is refused."""
    bad = token(claims)
    async with client(jwt_app(JWTKey(SECRET, "HS256")), FakeClock(NOW)) as c:
        r = await c.get("/me", headers=bearer(bad))
    assert r.status_code == 403
    assert reason in r.json()["detail"].lower()
    assert bad not in r.text


async def test_token_with_a_wrong_signature_is_403() -> None:
    """A token signed with another secret is refused."""
    async with client(jwt_app(JWTKey(SECRET, "HS256")), FakeClock(NOW)) as c:
        r = await c.get("/me", headers=bearer(token(key="another-secret-of-32-bytes-or-more!")))
    assert r.status_code == 403


async def test_alg_none_token_is_refused() -> None:
    """An unsigned token (alg none) is refused even though its claims are fine."""
    async with client(jwt_app(JWTKey(SECRET, "HS256")), FakeClock(NOW)) as c:
        r = await c.get("/me", headers=bearer(forged("none", b"")))
    assert r.status_code == 403


async def test_hs256_token_keyed_with_the_rsa_public_key_is_refused() -> None:
    """Key confusion: an HS256 token 'signed' with the RS256 public key is refused."""
    async with client(jwt_app(JWTKey(RSA_PUBLIC_PEM, "RS256")), FakeClock(NOW)) as c:
        r = await c.get("/me", headers=bearer(forged("HS256", RSA_PUBLIC_PEM)))
    assert r.status_code == 403


def test_public_key_pinned_to_hs256_is_refused_at_declaration() -> None:
    """A PEM public key given for HS256 is the key-confusion mistake and fails at once."""
    with pytest.raises(DeclarationError, match="unusable key"):
        JWTAuth(JWTKey(RSA_PUBLIC_PEM, "HS256"))


def test_alg_none_key_is_refused_at_declaration() -> None:
    """A key pinned to the none algorithm cannot be declared."""
    with pytest.raises(DeclarationError, match="not allowed"):
        JWTAuth(JWTKey(SECRET, "none"))


async def test_kid_picks_the_key_and_its_algorithm() -> None:
    """With several keys, the token's kid chooses the key, and only its algorithm passes."""
    app = jwt_app(JWTKey(SECRET, "HS256", kid="h"), JWTKey(RSA_PUBLIC_PEM, "RS256", kid="r"))
    async with client(app, FakeClock(NOW)) as c:
        rsa_ok = await c.get("/me", headers=bearer(token(key=RSA_KEY, alg="RS256", kid="r")))
        hs_ok = await c.get("/me", headers=bearer(token(kid="h")))
        swapped = await c.get("/me", headers=bearer(token(kid="r")))
        unknown = await c.get("/me", headers=bearer(token(kid="x")))
    assert (rsa_ok.status_code, hs_ok.status_code) == (200, 200)
    assert (swapped.status_code, unknown.status_code) == (403, 403)


async def test_verified_token_stops_working_when_it_expires() -> None:
    """A token remembered as verified is refused once its exp has passed."""
    clock = FakeClock(NOW)
    good = token()
    async with client(jwt_app(JWTKey(SECRET, "HS256")), clock) as c:
        first = await c.get("/me", headers=bearer(good))
        clock.advance(61)
        later = await c.get("/me", headers=bearer(good))
    assert (first.status_code, later.status_code) == (200, 403)


def custom_app(calls: list[str], ttl: float = 60.0) -> App:
    app = App("custom")

    async def check(value: str) -> Principal | str | None:
        calls.append(value)
        if value == "ok":
            return "bob"
        if value == "rich":
            return Principal("carol", {"plan": "rich"})
        return None

    @app.route("/who", auth=CustomAuth(check, ttl=ttl))
    async def who(principal: Principal) -> dict[str, Any]:
        return {"id": principal.id, "claims": dict(principal.claims)}

    return app


async def test_custom_authorizer_answers_are_cached_for_the_ttl() -> None:
    """The function runs once per token within the TTL, and again after it."""
    calls: list[str] = []
    clock = FakeClock()
    async with client(custom_app(calls), clock) as c:
        first = await c.get("/who", headers=bearer("ok"))
        await c.get("/who", headers=bearer("ok"))
        clock.advance(61)
        await c.get("/who", headers=bearer("ok"))
    assert first.json() == {"id": "bob", "claims": {}}
    assert calls == ["ok", "ok"]


async def test_custom_authorizer_refusal_is_403_and_cached() -> None:
    """None from the function is 403, and the refusal is cached like an acceptance."""
    calls: list[str] = []
    async with client(custom_app(calls)) as c:
        codes = [(await c.get("/who", headers=bearer("nope"))).status_code for _ in range(2)]
        missing = await c.get("/who")
    assert codes == [403, 403]
    assert calls == ["nope"]
    assert missing.status_code == 401


async def test_custom_authorizer_may_return_a_principal_with_claims() -> None:
    """A Principal returned by the function reaches the handler unchanged."""
    async with client(custom_app([], ttl=0)) as c:
        r = await c.get("/who", headers=bearer("rich"))
    assert r.json() == {"id": "carol", "claims": {"plan": "rich"}}


async def test_a_bare_async_function_is_a_custom_authorizer() -> None:
    """auth= also takes an async function, reading the custom header of CustomAuth's default."""
    app = App("bare")

    async def check(value: str) -> str | None:
        return "dave" if value == "t" else None

    @app.route("/x", auth=check)
    async def x(principal: Principal) -> str:
        return principal.id

    async with client(app) as c:
        r = await c.get("/x", headers=bearer("t"))
    assert r.text == "dave"


def test_principal_parameter_on_a_route_without_auth_is_refused() -> None:
    """A handler asking for a Principal on an open route fails when the gateway is built."""
    app = App("open")

    @app.route("/open")
    async def open_route(principal: Principal) -> None: ...

    with pytest.raises(DeclarationError, match="has no auth="):
        _ = app.asgi


async def test_credentials_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """A handler failing behind an authorizer logs the error, never the token."""
    app = App("logs")
    secret_token = token()

    @app.route("/boom", auth=JWTAuth(JWTKey(SECRET, "HS256"), audience="api"))
    async def boom() -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.DEBUG)
    async with client(app, FakeClock(NOW)) as c:
        r = await c.get("/boom", headers=bearer(secret_token))
        await c.get("/boom", headers=bearer(secret_token + "x"))
    assert r.status_code == 500
    assert "http.error" in caplog.text
    assert secret_token not in caplog.text
