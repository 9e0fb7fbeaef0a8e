"""JWTAuth(jwks=...): keys fetched from a real JWKS server on loopback, cached, rotated, bounded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from framework import App
from framework.exceptions import DeclarationError
from framework.gateway import JWKS, JWTAuth, Principal
from tests.gateway.helpers import FakeClock, client

NOW = 1_700_000_000.0
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_test"
KEYS = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in "ab"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(kid: str, **extra: Any) -> dict[str, Any]:
    """The public JWK of test key ``kid``, as Cognito publishes it."""
    data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(KEYS[kid].public_key()))
    return {**data, "kid": kid, "alg": "RS256", "use": "sig", **extra}


class JWKSServer:
    """A JWKS endpoint on a free loopback port: what it publishes, and how often it was asked."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": [jwk("a")]}
        self.requests = 0
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> JWKSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks_server() -> Iterator[JWKSServer]:
    """A JWKS server publishing key ``a``."""
    with JWKSServer() as server:
        yield server


def token(kid: str, sub: str = "alice", signer: str | None = None, **claims: Any) -> str:
    """A Cognito-like access token signed by key ``signer`` (default ``kid``) naming ``kid``."""
    body = {"sub": sub, "iss": ISSUER, "aud": "app-client", "exp": NOW + 3600, **claims}
    return jwt.encode(body, KEYS[signer or kid], algorithm="RS256", headers={"kid": kid})


def app_for(auth: JWTAuth) -> App:
    """An app with one route behind ``auth``."""
    app = App("jwks")

    @app.route("/me", auth=auth)
    async def me(principal: Principal) -> dict[str, Any]:
        return {"id": principal.id}

    return app


def make_auth(url: str, **options: Any) -> JWTAuth:
    """JWTAuth on the key set at ``url``."""
    return JWTAuth(jwks=JWKS(url, **options), issuer=ISSUER, audience="app-client")


async def test_tokens_are_verified_with_keys_fetched_once(jwks_server: JWKSServer) -> None:
    """The key set is fetched on the first token and reused for the next ones."""
    async with client(app_for(make_auth(jwks_server.url)), FakeClock(NOW)) as c:
        for n in range(5):
            r = await c.get("/me", headers={"authorization": f"Bearer {token('a', f'u{n}')}"})
            assert r.status_code == 200
            assert r.json() == {"id": f"u{n}"}
    assert jwks_server.requests == 1


async def test_a_rotated_key_is_fetched_on_its_first_token(jwks_server: JWKSServer) -> None:
    """A token naming a kid not held yet makes the set be fetched again, then it passes."""
    clock = FakeClock(NOW)
    async with client(app_for(make_auth(jwks_server.url, min_refresh_interval=30)), clock) as c:
        assert (await c.get("/me", headers={"authorization": f"Bearer {token('a')}"})).is_success
        jwks_server.document = {"keys": [jwk("a"), jwk("b")]}  # the provider rotates
        clock.advance(31)
        r = await c.get("/me", headers={"authorization": f"Bearer {token('b', 'bob')}"})
    assert r.status_code == 200
    assert r.json() == {"id": "bob"}
    assert jwks_server.requests == 2


async def test_forged_kids_never_hammer_the_key_set_url(jwks_server: JWKSServer) -> None:
    """200 tokens with unknown kids within the refresh interval cost at most one more fetch."""
    clock = FakeClock(NOW)
    async with client(app_for(make_auth(jwks_server.url, min_refresh_interval=60)), clock) as c:
        assert (await c.get("/me", headers={"authorization": f"Bearer {token('a')}"})).is_success
        statuses = set()
        for n in range(200):
            bad = jwt.encode(
                {"sub": "x", "iss": ISSUER, "aud": "app-client", "exp": NOW + 60},
                KEYS["b"],
                algorithm="RS256",
                headers={"kid": f"forged-{n}"},
            )
            statuses.add(
                (await c.get("/me", headers={"authorization": f"Bearer {bad}"})).status_code
            )
            clock.advance(0.1)  # 20 s in all: inside one interval
    assert statuses == {403}
    assert jwks_server.requests <= 2


async def test_the_key_set_is_fetched_again_after_its_ttl(jwks_server: JWKSServer) -> None:
    """After cache_ttl seconds the set is fetched again, so a removed key stops working."""
    clock = FakeClock(NOW)
    auth = make_auth(jwks_server.url, cache_ttl=300, min_refresh_interval=10)
    async with client(app_for(auth), clock) as c:
        assert (await c.get("/me", headers={"authorization": f"Bearer {token('a')}"})).is_success
        jwks_server.document = {"keys": [jwk("b")]}  # key a revoked
        clock.advance(301)
        r = await c.get("/me", headers={"authorization": f"Bearer {token('a', 'again')}"})
    assert r.status_code == 403
    assert jwks_server.requests == 2


async def test_an_unreachable_key_set_is_503_then_recovers(jwks_server: JWKSServer) -> None:
    """With no keys ever fetched, a failing URL gives 503 with Retry-After, not a 403."""
    clock = FakeClock(NOW)
    jwks_server.status = 500
    auth = make_auth(jwks_server.url, min_refresh_interval=5)
    async with client(app_for(auth), clock) as c:
        r = await c.get("/me", headers={"authorization": f"Bearer {token('a')}"})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        jwks_server.status = 200
        clock.advance(6)
        assert (await c.get("/me", headers={"authorization": f"Bearer {token('a')}"})).is_success


async def test_keys_held_stay_in_use_while_the_url_fails(jwks_server: JWKSServer) -> None:
    """A failed refresh keeps the keys already fetched."""
    clock = FakeClock(NOW)
    auth = make_auth(jwks_server.url, cache_ttl=60, min_refresh_interval=10)
    async with client(app_for(auth), clock) as c:
        assert (await c.get("/me", headers={"authorization": f"Bearer {token('a')}"})).is_success
        jwks_server.status = 503
        clock.advance(61)
        r = await c.get("/me", headers={"authorization": f"Bearer {token('a', 'still')}"})
    assert r.status_code == 200
    assert jwks_server.requests == 2


async def test_symmetric_keys_and_other_algorithms_in_the_set_are_ignored(
    jwks_server: JWKSServer,
) -> None:
    """An oct key in the set cannot verify an HS256 token; a key is pinned to its alg."""
    secret = "a-shared-secret-of-at-least-32-bytes"
    published = _b64(secret.encode())
    jwks_server.document = {
        "keys": [jwk("a"), {"kty": "oct", "kid": "h", "k": published, "alg": "HS256"}]
    }
    hs = jwt.encode(
        {"sub": "mallory", "iss": ISSUER, "aud": "app-client", "exp": NOW + 60},
        secret,
        algorithm="HS256",
        headers={"kid": "h"},
    )
    # Key confusion: HS256 "signed" with the published RSA key's JWK as the HMAC secret.
    header = _b64(json.dumps({"alg": "HS256", "kid": "a"}).encode())
    payload = _b64(
        json.dumps({"sub": "m", "iss": ISSUER, "aud": "app-client", "exp": NOW + 60}).encode()
    )
    mac = hmac.new(json.dumps(jwk("a")).encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    confused = f"{header}.{payload}.{_b64(mac.digest())}"
    async with client(app_for(make_auth(jwks_server.url)), FakeClock(NOW)) as c:
        for bad in (hs, confused):
            assert (
                await c.get("/me", headers={"authorization": f"Bearer {bad}"})
            ).status_code == 403


async def test_a_token_for_another_audience_is_refused(jwks_server: JWKSServer) -> None:
    """The provider signs tokens for other apps too: aud must match."""
    other = token("a", aud="another-client")
    async with client(app_for(make_auth(jwks_server.url)), FakeClock(NOW)) as c:
        r = await c.get("/me", headers={"authorization": f"Bearer {other}"})
    assert r.status_code == 403


def test_jwks_without_issuer_and_audience_is_refused() -> None:
    """JWTAuth(jwks=...) needs issuer and audience."""
    with pytest.raises(DeclarationError, match="needs issuer= and audience="):
        JWTAuth(jwks="https://example.com/jwks.json")


def test_jwks_refuses_symmetric_algorithms() -> None:
    """A key set is public: an HMAC algorithm for it is refused at declaration."""
    with pytest.raises(DeclarationError, match="asymmetric"):
        JWKS("https://example.com/jwks.json", algorithms=["HS256"])
