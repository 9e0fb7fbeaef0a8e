"""Secrets out of URLs: what every message and log line shows of a backend or relay URL.

A URL's password (``amqp://user:PASSWORD@host``) and the values of query options that name a
secret (``aws_secret_access_key``, ``token``, ``password``, ...) become ``***``; the rest of the
URL stays, so the message still says which broker, host and user it was about.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "mask_text", "mask_url"]

MASK = "***"

# Query option names whose value is a secret (matched as substrings, case-insensitively).
_SECRET_WORDS = ("secret", "password", "passwd", "pwd", "token", "key", "credential", "signature")
# Something that looks like a URL inside free text: a scheme, "://", then no whitespace or quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_QUERY_PAIR = re.compile(r"([^&=;]+)=([^&;]*)")


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def mask_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``.

    Works on URLs that ``urlsplit`` would refuse too (a bad port, say): it never raises, and
    only ever removes text. Keys and values are masked as they are written (still encoded).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = _split_authority(rest)
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else authority
    path, question, query = tail.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        query = _QUERY_PAIR.sub(
            lambda m: f"{m.group(1)}={MASK}" if _secret_name(m.group(1)) else m.group(0), query
        )
        path = f"{path}?{query}{hash_}{fragment}"
    return f"{scheme}://{authority}{slash}{path}"


def _split_authority(rest: str) -> tuple[str, str, str]:
    """Split what follows ``://`` into the authority, the separator and the rest."""
    # The authority ends at the first "/", "?" or "#" after the last "@" (a password may hold
    # any of them unencoded in a hand-typed URL, so look for them only after the "@").
    at = rest.rfind("@")
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark, at + 1)
        if found != -1:
            cut = min(cut, found)
    return rest[:cut], "", rest[cut:]


def mask_text(text: str) -> str:
    """``text`` with every URL in it masked as ``mask_url`` does (fast when it has none)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: mask_url(m.group(0)), text)
