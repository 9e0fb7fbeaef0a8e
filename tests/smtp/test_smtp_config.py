"""SMTPConfig and RelayConfig: validation at construction, IP-rule precedence, relay URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.exceptions import ConfigError
from framework.smtp.config import RelayConfig, SMTPConfig


def test_defaults_follow_rfc_5321() -> None:
    """The defaults: 10 MiB, 100 recipients, 1001-byte lines, no IP rules, no TLS, no AUTH."""
    config = SMTPConfig()
    assert (config.max_size, config.max_recipients, config.max_line_length) == (
        10 * 1024 * 1024,
        100,
        1001,
    )
    assert config.allows("192.0.2.1")
    assert config.allows("2001:db8::1")


def test_block_wins_over_allow() -> None:
    """An address both allowed and blocked is refused: the block list has precedence."""
    config = SMTPConfig(allow=["10.0.0.0/8"], block=["10.1.0.0/16"])
    assert config.allows("10.2.3.4")
    assert not config.allows("10.1.2.3")


def test_allow_list_refuses_everything_outside_it() -> None:
    """With an allow list, an address outside every allowed range is refused."""
    config = SMTPConfig(allow=["192.0.2.0/24", "2001:db8::/32"])
    assert config.allows("192.0.2.77")
    assert config.allows("2001:db8::5")
    assert not config.allows("198.51.100.1")
    assert not config.allows("2001:db9::1")


def test_block_list_alone_lets_the_rest_in() -> None:
    """With only a block list, every address outside it may connect."""
    config = SMTPConfig(block=["203.0.113.0/24"])
    assert not config.allows("203.0.113.9")
    assert config.allows("198.51.100.1")


def test_ipv4_mapped_ipv6_peer_matches_ipv4_ranges() -> None:
    """A dual-stack socket's '::ffff:a.b.c.d' peer is matched against the IPv4 ranges."""
    config = SMTPConfig(block=["192.0.2.0/24"])
    assert not config.allows("::ffff:192.0.2.1")


def test_peer_without_ip_is_refused_once_ip_rules_exist() -> None:
    """A peer with no IP address (a Unix socket) is refused when any IP rule exists."""
    assert SMTPConfig().allows("")
    assert not SMTPConfig(block=["192.0.2.0/24"]).allows("")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allow": ["10.0.0.300/8"]}, "not an IP address or CIDR range"),
        ({"block": "10.0.0.0/8"}, "list of CIDR ranges"),
        ({"max_size": 0}, "max_size"),
        ({"max_recipients": 0}, "max_recipients"),
        ({"max_line_length": 10}, "max_line_length"),
        ({"tls_cert": "/nonexistent.pem"}, "needs both tls_cert and tls_key"),
        ({"tls_cert": "/nonexistent.pem", "tls_key": "/nonexistent.key"}, "no file at"),
        ({"require_tls": True}, "require_tls needs"),
        ({"auth_required": True}, "auth_required needs"),
        ({"auth": {"u": "p"}}, "only after STARTTLS"),
    ],
)
def test_bad_receiver_config_is_refused_when_built(
    options: dict[str, object], message: str
) -> None:
    """A bad option raises ConfigError at construction, naming what is wrong."""
    with pytest.raises(ConfigError, match=message):
        SMTPConfig(**options)  # type: ignore[arg-type]


def test_auth_credentials_never_appear_in_repr(tls_files: tuple[Path, Path]) -> None:
    """The AUTH credentials map is left out of the config's repr."""
    cert, key = tls_files
    config = SMTPConfig(tls_cert=cert, tls_key=key, auth={"robot": "s3cret-pw"})
    assert "s3cret-pw" not in repr(config)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:2525", ("127.0.0.1", 2525, "none", None, None)),
        ("smtp+starttls://u:p%40ss@mail.example", ("mail.example", 587, "starttls", "u", "p@ss")),
        ("smtps://mail.example", ("mail.example", 465, "tls", None, None)),
    ],
)
def test_relay_url_gives_host_port_tls_and_credentials(
    url: str, expected: tuple[object, ...]
) -> None:
    """A relay URL's scheme picks the TLS mode and default port; credentials are unquoted."""
    relay = RelayConfig.from_url(url)
    assert (relay.host, relay.port, relay.tls, relay.username, relay.password) == expected


def test_relay_password_is_not_in_repr() -> None:
    """The relay password is left out of repr, so it never reaches a log through one."""
    relay = RelayConfig.from_url("smtp+starttls://u:hunter2@mail.example")
    assert "hunter2" not in repr(relay)


@pytest.mark.parametrize(
    "url", ["http://mail.example", "smtp://", "smtp://h:99999", "smtp://h?timeout=soon"]
)
def test_bad_relay_url_is_refused(url: str) -> None:
    """A relay URL with another scheme, no host, a bad port or timeout raises ConfigError."""
    with pytest.raises(ConfigError):
        RelayConfig.from_url(url)


def test_relay_from_env_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """RelayConfig.from_env reads FRAMEWORK_MAIL_RELAY, and gives None when it is unset."""
    monkeypatch.delenv("FRAMEWORK_MAIL_RELAY", raising=False)
    assert RelayConfig.from_env() is None
    monkeypatch.setenv("FRAMEWORK_MAIL_RELAY", "smtp://127.0.0.1:2525")
    relay = RelayConfig.from_env()
    assert relay is not None
    assert relay.port == 2525
