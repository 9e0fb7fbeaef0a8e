"""Signing keys fetched from a JWKS URL, as Amazon Cognito user pools and OIDC providers publish.

``JWTAuth(jwks=JWKS(url))`` verifies tokens with the keys at ``url``
(``https://cognito-idp.REGION.amazonaws.com/POOL_ID/.well-known/jwks.json``, or an OIDC
provider's ``jwks_uri``). The key set is fetched on the first token, kept ``cache_ttl``
seconds, and fetched again early when a token names a ``kid`` it does not hold (the provider
rotated its keys), but never more often than once every ``min_refresh_interval`` seconds: a
flood of tokens with forged ``kid`` values costs the provider one request per interval, not one
per token. Only one fetch runs at a time; concurrent requests wait for it.

When a fetch fails the keys already held stay in use (logged as ``jwks.fetch_failed``); with
none held, requests get 503 with ``Retry-After`` rather than a 403 that would blame the token.
Only asymmetric keys (``RSA``, ``EC``, ``OKP``) are taken: a symmetric ``oct`` key published
in a key set would let anyone who can read the set sign tokens.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import anyio

from framework.exceptions import DeclarationError
from framework.gateway.errors import HTTPError
from framework.logs import event

__all__ = ["JWKS"]

log = logging.getLogger("framework.gateway")

_MAX_SIZE = 1_048_576  # a key set is a few KB; refuse to buffer more than this
_ASYMMETRIC = ("RSA", "EC", "OKP")
_DEFAULT_ALGORITHMS = ("RS256",)


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    algorithm: str


class JWKS:
    """The signing keys published at a JWKS URL, fetched, cached and refreshed on a new ``kid``.

    Args:
        url: The key set's URL (``https://``; ``http://`` only for loopback tests).
        algorithms: The algorithms accepted for a key whose JWK has no ``alg``; a key's own
            ``alg`` must also be one of them. Cognito signs with RS256.
        cache_ttl: Seconds a fetched key set is used before it is fetched again.
        min_refresh_interval: The fewest seconds between two fetches, however many tokens
            name an unknown ``kid``.
        timeout: Seconds a fetch may take.

    Raises:
        DeclarationError: For a URL that is not http(s), a symmetric or unknown algorithm, or
            intervals that are not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        algorithms: tuple[str, ...] | list[str] = _DEFAULT_ALGORITHMS,
        cache_ttl: float = 3600.0,
        min_refresh_interval: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise DeclarationError(f"JWKS url must be https://..., not {url!r}")
        import jwt.algorithms  # PyJWT loads cryptography: only an app that verifies tokens pays

        known = jwt.algorithms.get_default_algorithms()
        bad = [a for a in algorithms if a not in known or a == "none" or a.startswith("HS")]
        if bad or not algorithms:
            raise DeclarationError(
                f"JWKS algorithms {list(algorithms)!r}: use asymmetric ones (RS256, ES256, ...)"
            )
        if cache_ttl <= 0 or min_refresh_interval <= 0 or timeout <= 0:
            raise DeclarationError("JWKS cache_ttl, min_refresh_interval and timeout must be > 0")
        self.url = url
        self.algorithms = tuple(algorithms)
        self.cache_ttl = cache_ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self.fetches = 0  # how many times the URL was asked (for tests and curiosity)
        self._keys: dict[str | None, _Key] = {}
        self._fetched_at = -math.inf  # when the held keys were fetched
        self._tried_at = -math.inf  # when a fetch was last tried, successful or not
        self._lock: anyio.Lock | None = None

    async def key(self, kid: str | None, now: float) -> tuple[Any, str]:
        """Return ``(key, algorithm)`` for a token's ``kid`` at wall time ``now`` (seconds).

        Raises:
            HTTPError: 403 for a ``kid`` the key set does not hold (after at most one
                refresh), 503 when no key set could be fetched at all.
        """
        found = self._lookup(kid)
        if found is None or now - self._fetched_at > self.cache_ttl:
            await self._refresh(now, needed=kid)
            found = self._lookup(kid)
        if found is None:
            if not self._keys and self._fetched_at == -math.inf:
                raise HTTPError(
                    503,
                    "the signing keys for bearer tokens cannot be fetched; try again later",
                    {"Retry-After": str(max(1, round(self.min_refresh_interval)))},
                )
            raise HTTPError(403, "the bearer token is not valid: unknown or missing kid")
        return found.key, found.algorithm

    def _lookup(self, kid: str | None) -> _Key | None:
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            found = next(iter(self._keys.values()))  # a token without kid, a set of one key
        return found

    async def _refresh(self, now: float, needed: str | None) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            # Another request may have fetched while this one waited for the lock.
            if self._lookup(needed) is not None and now - self._fetched_at <= self.cache_ttl:
                return
            if now - self._tried_at < self.min_refresh_interval:
                return  # too soon: a forged kid must not make us hammer the URL
            self._tried_at = now
            self.fetches += 1
            import httpx  # on the first fetch: an app without JWKS, or a cold start, skips it

            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                event(
                    log,
                    logging.WARNING,
                    "jwks.fetch_failed",
                    url=self.url,
                    error=f"{type(exc).__name__}: {exc}",
                    keys_kept=len(self._keys),
                )
                return
            self._keys = keys
            self._fetched_at = now
            event(log, logging.INFO, "jwks.fetched", url=self.url, keys=len(keys))

    async def _fetch(self) -> dict[str | None, _Key]:
        import httpx

        async with (
            httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_SIZE:
                    raise ValueError(f"the key set is larger than {_MAX_SIZE} bytes")
        return self._parse(body)

    def _parse(self, body: bytes) -> dict[str | None, _Key]:
        import jwt

        data = json.loads(body)  # UTF-8, -16 or -32, as RFC 8259 allows
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError('a JWKS document is {"keys": [...]}')
        keys: dict[str | None, _Key] = {}
        for jwk in data["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") not in _ASYMMETRIC:
                continue  # symmetric or unknown: never a verification key from a URL
            if jwk.get("use", "sig") != "sig":
                continue  # an encryption key
            algorithm = jwk.get("alg") or self.algorithms[0]
            if algorithm not in self.algorithms:
                continue
            try:
                parsed = jwt.PyJWK(jwk, algorithm)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            keys[jwk.get("kid")] = _Key(parsed.key, algorithm)
        if not keys:
            raise ValueError(f"no usable signing key (algorithms {list(self.algorithms)})")
        return keys
