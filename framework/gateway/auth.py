"""Authorizers, the forms ``auth=`` takes: API keys, JWT bearer tokens and custom async functions.

An authorizer reads one request header and answers with a ``Principal`` or an ``HTTPError``:
401 (with ``WWW-Authenticate``) when the credentials are missing, 403 when they are wrong. The
principal reaches the handler through a parameter annotated ``Principal`` and through
``request.state.principal``, and keys the per-key throttles and the response cache.

Credentials are never logged nor echoed: error details name the header, never its value, and
caches hold SHA-256 digests of tokens, not the tokens.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.cache import ExpiringLRU
from framework.gateway.errors import HTTPError
from framework.gateway.inputs import header
from framework.gateway.jwks import JWKS
from framework.gateway.routing import Endpoint
from framework.gateway.throttle import PlanLimiter, UsagePlan
from framework.principal import Principal

__all__ = [
    "APIKey",
    "APIKeyAuth",
    "Authorizer",
    "CustomAuth",
    "JWTAuth",
    "JWTKey",
    "Principal",
    "authorizer_for",
    "guarded",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Authorizer(Protocol):
    """**Protocol**: what ``auth=`` accepts (besides a bare async function, see ``CustomAuth``)."""

    def security_scheme(self) -> dict[str, Any]:
        """Return the OpenAPI security scheme object describing this authorizer."""

    async def authorize(self, scope: Scope, now: float) -> Principal:
        """Return the principal of the request in ``scope`` at wall time ``now`` (seconds).

        Raises:
            HTTPError: 401 without credentials, 403 with wrong ones, 429 over a usage plan.
        """


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True, slots=True)
class APIKey:
    """One API key's owner and usage plan.

    Attributes:
        principal: Who the key belongs to (the ``Principal.id``).
        plan: The key's rate, burst and daily quota; None for no limit.
        claims: Extra data handed to the handler as ``Principal.claims``.
    """

    principal: str
    plan: UsagePlan | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class APIKeyAuth:
    """API keys sent in a header, each with its owner and optional usage plan.

    A key's usage plan is shared by every route this authorizer guards, like an API Gateway
    usage plan: the rate and burst refill a token bucket, the quota counts requests per UTC day.

    Args:
        keys: Each key mapped to its owner's id, or to an ``APIKey`` with a plan.
        header: The header carrying the key.

    Raises:
        DeclarationError: If there are no keys or one is empty.
    """

    def __init__(self, keys: Mapping[str, str | APIKey], *, header: str = "X-API-Key") -> None:
        if not keys or any(not k for k in keys):
            raise DeclarationError("APIKeyAuth needs at least one key, and no empty key")
        self.header = header
        self._name = header.lower().encode("latin-1")
        # Looked up by digest, so the dict compares hashes of secrets rather than the secrets.
        self._keys = {
            _digest(k.encode()): v if isinstance(v, APIKey) else APIKey(v) for k, v in keys.items()
        }
        self._limiter = PlanLimiter()

    def security_scheme(self) -> dict[str, Any]:
        """Return the OpenAPI ``apiKey`` scheme for the header."""
        return {"type": "apiKey", "in": "header", "name": self.header}

    async def authorize(self, scope: Scope, now: float) -> Principal:
        """Return the key's owner; enforce its usage plan.

        Raises:
            HTTPError: 401 without the header, 403 for an unknown key, 429 over the plan.
        """
        raw = header(scope, self._name)
        if not raw:
            raise HTTPError(
                401,
                f"this route needs an API key in the {self.header} header",
                {"WWW-Authenticate": f'ApiKey header="{self.header}"'},
            )
        key = self._keys.get(_digest(raw))
        if key is None:
            raise HTTPError(403, f"the API key in the {self.header} header is not valid")
        if key.plan is not None:
            self._limiter.check(key.principal, key.plan, now)
        return Principal(key.principal, key.claims, "api_key")


@dataclass(frozen=True, slots=True)
class JWTKey:
    """A key that verifies JWT signatures, pinned to one algorithm.

    Attributes:
        key: An HMAC secret for HS256/384/512; a PEM public key (or key object) for RS*, PS*
            and ES*.
        algorithm: The one algorithm tokens signed with this key may use.
        kid: The ``kid`` header selecting this key when there are several.
    """

    key: Any
    algorithm: str
    kid: str | None = None


class JWTAuth:
    """Bearer JSON Web Tokens, verified with PyJWT.

    Every token must be signed with one of ``keys`` by that key's own algorithm (so neither
    ``alg: none`` nor an HMAC token "signed" with a public key passes), carry an ``exp`` in the
    future (with ``leeway`` seconds of slack), and match ``issuer`` and ``audience`` when set.
    Verified tokens are remembered until they expire (at most ``max_entries``), so a client
    sending the same token again skips the signature check.

    Args:
        *keys: The verification keys; with several, a token's ``kid`` header picks one.
        jwks: Instead of ``keys``: the provider's key set, a ``JWKS`` or its URL (an Amazon
            Cognito user pool's ``.well-known/jwks.json``, an OIDC ``jwks_uri``), fetched,
            cached and refreshed on an unknown ``kid`` at a bounded rate; needs ``issuer``
            and ``audience``.
        issuer: The required ``iss`` claim.
        audience: The required ``aud`` claim.
        leeway: Seconds of clock skew tolerated on ``exp`` and ``nbf``.
        principal_claim: The claim naming the principal.
        max_entries: How many verified tokens to remember.

    Raises:
        DeclarationError: For no key, an unknown or ``none`` algorithm, or a key that does not
            fit its algorithm (a PEM key for HS256: the classic key-confusion mistake); for
            ``jwks`` with keys, or without ``issuer`` and ``audience``.
    """

    def __init__(
        self,
        *keys: JWTKey,
        jwks: JWKS | str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 0.0,
        principal_claim: str = "sub",
        max_entries: int = 10_000,
    ) -> None:
        if not keys and jwks is None:
            raise DeclarationError(
                "JWTAuth needs at least one JWTKey(key, algorithm) or jwks=JWKS(url)"
            )
        if keys and jwks is not None:
            raise DeclarationError("JWTAuth takes JWTKey(...)s or jwks=..., not both")
        if len(keys) > 1 and any(k.kid is None for k in keys):
            raise DeclarationError("JWTAuth with several keys needs a kid on each")
        self.jwks = JWKS(jwks) if isinstance(jwks, str) else jwks
        if self.jwks is not None and (issuer is None or audience is None):
            # Anyone can get a token signed by a shared provider (a Cognito pool, Google):
            # without iss and aud, a token meant for another app would pass.
            raise DeclarationError(
                "JWTAuth(jwks=...) needs issuer= and audience= (the provider signs tokens "
                "for other apps too)"
            )
        # PyJWT (and cryptography under it) is imported by the first JWTAuth, not by the
        # gateway: an app without one (an HTTP or SQS Lambda) starts without it.
        import jwt
        from jwt.algorithms import get_default_algorithms

        algorithms = get_default_algorithms()
        self._keys: dict[str | None, tuple[Any, str]] = {}
        for k in keys:
            if k.algorithm not in algorithms or k.algorithm == "none":
                raise DeclarationError(f"JWTKey algorithm {k.algorithm!r} is not allowed")
            try:
                prepared = algorithms[k.algorithm].prepare_key(k.key)
            except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
                raise DeclarationError(f"JWTKey for {k.algorithm}: unusable key ({exc})") from None
            self._keys[k.kid] = (prepared, k.algorithm)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.principal_claim = principal_claim
        self._required = ["exp"] + ["iss"] * bool(issuer) + ["aud"] * bool(audience)
        self._verified: ExpiringLRU[bytes, Principal] = ExpiringLRU(max_entries)

    def security_scheme(self) -> dict[str, Any]:
        """Return the OpenAPI ``http`` bearer scheme."""
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}

    async def authorize(self, scope: Scope, now: float) -> Principal:
        """Return the principal named by a valid token's ``principal_claim``.

        Raises:
            HTTPError: 401 without a bearer token, 403 for an invalid or expired one, 503
                when a JWKS key set could never be fetched.
        """
        token = _bearer(scope)
        digest = _digest(token)
        principal = self._verified.get(digest, now)
        if principal is not None:
            return principal
        key, algorithm = await self._key_for(token, now)
        import jwt  # imported by __init__ already

        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                options={  # PyJWT's Options TypedDict cannot take a spread of booleans
                    "require": self._required,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed check (signature, audience, algorithm), never
            # the token itself.
            raise HTTPError(403, f"the bearer token is not valid: {exc}") from None
        # exp and nbf are checked against the gateway's clock rather than PyJWT's time.time(),
        # so the verified-token cache and the check agree on what "now" is.
        self._check_times(claims, now)
        subject = claims.get(self.principal_claim)
        if not isinstance(subject, str) or not subject:
            raise HTTPError(403, f"the bearer token has no {self.principal_claim!r} claim")
        principal = Principal(subject, MappingProxyType(claims), "jwt")
        # Remember it no longer than the token lives; exp is wall-clock seconds, like ``now``.
        self._verified.put(digest, principal, float(claims["exp"]) + self.leeway)
        return principal

    async def _key_for(self, token: bytes, now: float) -> tuple[Any, str]:
        """Return the key (and its one algorithm) the token's ``kid`` names."""
        import jwt  # imported by __init__ already

        try:
            header = (
                jwt.get_unverified_header(token)
                if self.jwks is not None or len(self._keys) > 1
                else {}
            )
        except jwt.InvalidTokenError:
            raise HTTPError(403, "the bearer token is not valid: malformed header") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise HTTPError(403, "the bearer token is not valid: unknown or missing kid")
        if self.jwks is not None:
            return await self.jwks.key(kid, now)
        found = self._keys.get(kid) if kid in self._keys else self._keys.get(None)
        if found is None:
            raise HTTPError(403, "the bearer token is not valid: unknown or missing kid")
        return found

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        exp, nbf = claims["exp"], claims.get("nbf")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise HTTPError(403, "the bearer token's exp claim is not a number")
        if now > exp + self.leeway:
            raise HTTPError(403, "the bearer token has expired")
        if nbf is not None and (
            isinstance(nbf, bool) or not isinstance(nbf, int | float) or now < nbf - self.leeway
        ):
            raise HTTPError(403, "the bearer token is not valid yet (nbf)")


def _bearer(scope: Scope) -> bytes:
    raw = header(scope, b"authorization")
    if raw is None or raw[:7].lower() != b"bearer " or not raw[7:].strip():
        raise HTTPError(
            401,
            "this route needs a bearer token in the Authorization header",
            {"WWW-Authenticate": "Bearer"},
        )
    return raw[7:].strip()


AuthorizerFunction = Callable[[str], Awaitable[Principal | str | None]]
"""A custom authorizer: the header's value in, a Principal, a principal id or None (refused) out."""


class CustomAuth:
    """An async function deciding on the value of one header, its answers cached for ``ttl``.

    Like API Gateway's token authorizer: the function gets the header's value (the bearer
    token, without ``Bearer ``, when the header is ``Authorization``) and returns a
    ``Principal``, a principal id, or None to refuse (403). It may raise ``HTTPError`` itself.
    Answers, refusals included, are cached by the value's digest for ``ttl`` seconds.

    Args:
        function: The async function.
        header: The header carrying the credentials.
        ttl: Seconds an answer is cached; 0 calls the function for every request.
        max_entries: How many answers to cache.

    Raises:
        DeclarationError: If ``function`` is not an async function or ``ttl`` is negative.
    """

    def __init__(
        self,
        function: AuthorizerFunction,
        *,
        header: str = "Authorization",
        ttl: float = 300.0,
        max_entries: int = 10_000,
    ) -> None:
        if not inspect.iscoroutinefunction(function):
            raise DeclarationError(f"CustomAuth needs an async function, not {function!r}")
        if ttl < 0:
            raise DeclarationError(f"CustomAuth ttl={ttl!r} must be seconds, 0 or more")
        self.function = function
        self.header = header
        self.ttl = ttl
        self._name = header.lower().encode("latin-1")
        self._answers: ExpiringLRU[bytes, Principal | None] = ExpiringLRU(max_entries)

    def security_scheme(self) -> dict[str, Any]:
        """Return the OpenAPI scheme: bearer for ``Authorization``, else an API-key header."""
        if self._name == b"authorization":
            return {"type": "http", "scheme": "bearer"}
        return {"type": "apiKey", "in": "header", "name": self.header}

    async def authorize(self, scope: Scope, now: float) -> Principal:
        """Return the function's (possibly cached) principal for the header's value.

        Raises:
            HTTPError: 401 without the header, 403 when the function refuses.
        """
        if self._name == b"authorization":
            raw = _bearer(scope)
        else:
            raw = header(scope, self._name) or b""
            if not raw:
                raise HTTPError(
                    401,
                    f"this route needs credentials in the {self.header} header",
                    {"WWW-Authenticate": f'ApiKey header="{self.header}"'},
                )
        digest = _digest(raw)
        principal, found = self._answers.lookup(digest, now)
        if not found:
            answer = await self.function(raw.decode("latin-1"))
            principal = Principal(answer) if isinstance(answer, str) else answer
            if self.ttl:
                self._answers.put(digest, principal, now + self.ttl)
        if principal is None:
            raise HTTPError(403, f"the credentials in the {self.header} header were refused")
        return principal


def authorizer_for(value: Any, where: str) -> Authorizer:
    """Return the authorizer ``auth=`` names: an authorizer, or an async function (CustomAuth).

    Raises:
        DeclarationError: For anything else, listing the forms ``auth=`` takes.
    """
    if isinstance(value, APIKeyAuth | JWTAuth | CustomAuth):
        return value
    if inspect.iscoroutinefunction(value):
        return CustomAuth(value)
    if hasattr(value, "security_scheme") and hasattr(value, "authorize"):
        return value  # type: ignore[no-any-return]  # a user's own Authorizer implementation
    raise DeclarationError(
        f"{where}: auth={value!r} is not an authorizer; use APIKeyAuth(...), "
        "JWTAuth(JWTKey(...)), CustomAuth(async_function) or an async function"
    )


def guarded(endpoint: Endpoint, authorizer: Authorizer, clock: Callable[[], float]) -> Endpoint:
    """Return ``endpoint`` behind ``authorizer``, its principal put in the scope's state.

    Args:
        endpoint: The route's endpoint (with its throttles and cache).
        authorizer: Who decides.
        clock: Wall-clock seconds now, for caches and quotas.
    """
    authorize = authorizer.authorize

    async def guarded_endpoint(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        principal = await authorize(scope, clock())
        scope.setdefault("state", {})["principal"] = principal
        await endpoint(scope, receive, send, request_id)

    return guarded_endpoint
