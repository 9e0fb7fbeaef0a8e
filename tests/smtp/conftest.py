"""Shared helpers for the SMTP tests: a self-signed certificate and blocking SMTP clients."""

from __future__ import annotations

import datetime
import ipaddress
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def client_tls(cert: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only ``cert``."""
    return ssl.create_default_context(cafile=str(cert))


async def in_thread(port: int, work: Callable[[smtplib.SMTP], Any]) -> Any:
    """Open an smtplib client to 127.0.0.1:``port`` in a thread, run ``work`` with it, quit."""

    def run() -> Any:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            return work(client)

    return await anyio.to_thread.run_sync(run)


def mail(to: str = "support@shop.example", subject: str = "hi", body: str = "hello") -> bytes:
    """A small well-formed mail."""
    return f"From: a@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


async def sendmail(
    port: int, raw: bytes, to: str = "support@shop.example", sender: str = "a@example.org"
) -> dict[str, tuple[int, bytes]]:
    """Send ``raw`` to ``to`` with smtplib; return the refused recipients (empty: all taken)."""

    def work(client: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return client.sendmail(sender, [to], raw)

    result: dict[str, tuple[int, bytes]] = await in_thread(port, work)
    return result
