"""``[tool.framework.smtp]``: the receiver configured from pyproject.toml, code winning over it."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from framework import App, ConfigError, Email
from framework.settings import load_settings, load_smtp_config
from framework.smtp.config import FILE_KEYS, SMTPConfig
from framework.testing import TestApp

from .conftest import in_thread

PYPROJECT = """
[tool.framework]
backend = "memory://"

# --8<-- [start:smtp]
[tool.framework.smtp]
hostname = "mx.shop.example"
max_size = 1_048_576          # bytes; advertised as SIZE, 552 above it
max_recipients = 20
allow = ["192.0.2.0/24", "127.0.0.0/8"]
block = ["192.0.2.66/32"]
timeout = 60

[tool.framework.env.prod.smtp]  # with FRAMEWORK_ENV=prod: merged over the table above
hostname = "mx.example.com"
tls_cert = "certs/mx.pem"     # relative to pyproject.toml
tls_key = "certs/mx.key"
require_tls = true
# --8<-- [end:smtp]
"""


@pytest.fixture
def project(tmp_path: Path, tls_files: tuple[Path, Path]) -> Path:
    """A project folder with the pyproject above and the certificate it names."""
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "certs").mkdir()
    cert, key = tls_files
    (tmp_path / "certs" / "mx.pem").write_bytes(cert.read_bytes())
    (tmp_path / "certs" / "mx.key").write_bytes(key.read_bytes())
    return tmp_path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return path


def test_table_becomes_the_smtp_config(project: Path) -> None:
    """Every key of ``[tool.framework.smtp]`` lands in the SMTPConfig; the rest stay default."""
    config = load_smtp_config(pyproject=project / "pyproject.toml", environ={})
    assert config is not None
    assert (config.hostname, config.max_size, config.max_recipients) == (
        "mx.shop.example",
        1_048_576,
        20,
    )
    assert config.timeout == 60
    assert config.allows("192.0.2.1")
    assert not config.allows("192.0.2.66")
    assert not config.allows("198.51.100.1")
    assert config.max_line_length == SMTPConfig().max_line_length
    assert config.tls_cert is None


def test_profile_table_is_merged_over_the_top_level_one(project: Path) -> None:
    """``[tool.framework.env.prod.smtp]`` replaces only the keys it sets; paths are relative."""
    table = load_settings(env="prod", pyproject=project / "pyproject.toml", environ={}).smtp
    assert table is not None
    config = table.build()
    assert config.hostname == "mx.example.com"
    assert config.max_recipients == 20
    assert config.require_tls
    assert Path(str(config.tls_cert)) == project / "certs" / "mx.pem"


def test_framework_env_variable_picks_the_profile(project: Path) -> None:
    """An app's own lookup honours FRAMEWORK_ENV; an unknown profile just has no table."""
    path = project / "pyproject.toml"
    prod = load_smtp_config(pyproject=path, environ={"FRAMEWORK_ENV": "prod"})
    other = load_smtp_config(pyproject=path, environ={"FRAMEWORK_ENV": "nowhere"})
    assert prod is not None
    assert other is not None
    assert (prod.hostname, other.hostname) == ("mx.example.com", "mx.shop.example")


def test_no_table_means_no_file_config(tmp_path: Path) -> None:
    """Without ``[tool.framework.smtp]`` the settings carry no SMTP config at all."""
    path = write(tmp_path, '[tool.framework]\nbackend = "memory://"\n')
    assert load_settings(pyproject=path, environ={}).smtp is None
    assert load_smtp_config(pyproject=path, environ={}) is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("max_message_size = 10", "unknown key 'max_message_size' (allowed: allow, block, "),
        ("max_size = '10MB'", "max_size must be a TOML integer, not '10MB'"),
        ("max_size = true", "max_size must be a TOML integer"),
        ("max_size = 0", "max_size must be at least 1 byte"),
        ("allow = '10.0.0.0/8'", "allow must be a TOML array"),
        ("allow = [10]", "allow must be an array of CIDR strings"),
        ("block = ['not-a-range']", "'not-a-range' is not an IP address or CIDR range"),
        ("tls_cert = 'missing.pem'\ntls_key = 'missing.key'", "no file at"),
        ("auth = { ops = 'secret' }", "auth cannot be set in pyproject.toml"),
        ("auth_required = true", "auth_required cannot be set in pyproject.toml"),
        ("reject_on = { virus = ['FAIL'] }", "reject_on cannot be set"),
        ("timeout = 'soon'", "timeout must be a TOML integer or float"),
    ],
)
def test_bad_table_is_refused_naming_the_key(tmp_path: Path, table: str, message: str) -> None:
    """An unknown key, a wrong type or a value SMTPConfig refuses fails naming the key."""
    path = write(tmp_path, f"[tool.framework.smtp]\n{table}\n")
    with pytest.raises(ConfigError, match=r"\[tool\.framework\.smtp\]") as caught:
        load_smtp_config(pyproject=path, environ={})
    assert message in str(caught.value)


def test_settings_check_keys_but_leave_files_to_the_server(tmp_path: Path) -> None:
    """Loading settings refuses a bad key at once but not a certificate only the server has."""
    path = write(tmp_path, "[tool.framework.smtp]\ntls_cert = 'c.pem'\ntls_key = 'k.pem'\n")
    table = load_settings(pyproject=path, environ={}).smtp
    assert table is not None
    with pytest.raises(ConfigError, match="no file at"):
        table.build()
    write(tmp_path, "[tool.framework.smtp]\nsize = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'size'"):
        load_settings(pyproject=path, environ={})


def test_unknown_key_error_lists_every_allowed_key(tmp_path: Path) -> None:
    """The unknown-key error names every key the table may hold."""
    path = write(tmp_path, "[tool.framework.smtp]\nsize = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_smtp_config(pyproject=path, environ={})
    assert all(key in str(caught.value) for key in FILE_KEYS)


def test_smtp_must_be_a_table(tmp_path: Path) -> None:
    """``smtp = 5`` under ``[tool.framework]`` is refused, not ignored."""
    path = write(tmp_path, "[tool.framework]\nsmtp = 5\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings(pyproject=path, environ={})


def test_code_wins_over_the_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``App(smtp=SMTPConfig(...))`` replaces the table whole; without it, the table applies."""
    monkeypatch.chdir(project)
    monkeypatch.delenv("FRAMEWORK_ENV", raising=False)
    coded = App("coded", smtp=SMTPConfig(max_size=5000))
    from_file = App("from-file")
    assert coded.smtp.max_size == 5000
    assert coded.smtp.hostname is None
    assert from_file.smtp.max_size == 1_048_576
    settings = load_settings(env="prod", pyproject=project / "pyproject.toml", environ={})
    coded.use_settings(settings)
    fresh = App("fresh")
    fresh.use_settings(settings)
    assert coded.smtp.max_size == 5000
    assert fresh.smtp.hostname == "mx.example.com"


async def test_receiver_runs_with_the_file_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SMTP client sees the file's hostname, SIZE and recipient limit."""
    write(
        tmp_path,
        "[tool.framework.smtp]\n"
        'hostname = "mx.file.example"\nmax_size = 4096\nmax_recipients = 1\n',
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FRAMEWORK_ENV", raising=False)
    app = App("file-configured")
    seen: list[Email] = []

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        seen.append(message)

    def talk(client: smtplib.SMTP) -> tuple[bytes, str, int, int]:
        client.ehlo()
        client.mail("a@example.org")
        first = client.rcpt("support@shop.example")[0]
        second = client.rcpt("support@shop.example")[0]
        return client.ehlo_resp or b"", client.esmtp_features["size"], first, second

    async with TestApp(app) as t:
        assert t.receiver is not None
        ehlo, size, first, second = await in_thread(t.receiver.port, talk)
    assert ehlo.startswith(b"mx.file.example")
    assert size == "4096"
    assert (first, second) == (250, 452)
