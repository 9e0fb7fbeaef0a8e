"""The HTTP gateway: an ASGI application built from the app's RouteSpecs, plus the admin API.

The forms ``auth=``, ``throttle=``, ``cache=`` and ``App(cors=...)`` take are exported here too.
"""

from framework.gateway.asgi import Gateway, build
from framework.gateway.auth import APIKey, APIKeyAuth, CustomAuth, JWTAuth, JWTKey, Principal
from framework.gateway.cache import Cache
from framework.gateway.cors import CORS
from framework.gateway.jwks import JWKS
from framework.gateway.proxies import TrustedProxies
from framework.gateway.routers import PUBLIC, Router
from framework.gateway.throttle import Throttle, UsagePlan

__all__ = [
    "CORS",
    "JWKS",
    "PUBLIC",
    "APIKey",
    "APIKeyAuth",
    "Cache",
    "CustomAuth",
    "Gateway",
    "JWTAuth",
    "JWTKey",
    "Principal",
    "Router",
    "Throttle",
    "TrustedProxies",
    "UsagePlan",
    "build",
]
