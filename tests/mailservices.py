"""The real mail-security components for tests: clamd, spamd and a DNS server on loopback.

Each fixture is session-scoped and starts its component once. A component that is not
installed skips its tests, unless ``FRAMEWORK_TEST_MAIL_SERVICES=1`` (CI), where it fails with
what to install.

- ``clamd``: Debian's ``clamav-daemon`` with a signature database of our own (no download is
  possible here) detecting the EICAR test file, on a loopback port and a Unix socket.
- ``spamd``: Debian's ``spamd`` with one rule file (GTUBE, no network tests), on a loopback port.
- ``dns_zone``: a dnslib server on a loopback UDP port, answering for the ``.test`` zone below:
  SPF, DKIM and DMARC records for one domain per outcome, and a DNS blocklist ``bl.test``.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "EICAR",
    "GTUBE",
    "ClamdService",
    "DNSZone",
    "SpamdService",
    "clamd",
    "dkim_key",
    "dns_zone",
    "spamd",
]

# The standard antivirus test file (EICAR) and spam test message (GTUBE): harmless strings every
# scanner detects by convention.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _missing(what: str, install: str) -> None:
    """Fail (CI: FRAMEWORK_TEST_MAIL_SERVICES=1) or skip when a component is not there."""
    reason = f"{what} is not installed: {install}"
    if os.environ.get("FRAMEWORK_TEST_MAIL_SERVICES") == "1":
        pytest.fail(f"FRAMEWORK_TEST_MAIL_SERVICES=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(
    name: str, port: int, process: subprocess.Popen[bytes], log: Path, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"{name} did not listen on {port} in {seconds} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass(frozen=True)
class ClamdService:
    """A running clamd: its ``host:port`` and its Unix socket."""

    address: str
    socket: Path
    config: Path


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdService]:
    """clamd (Debian's clamav-daemon) with a database detecting EICAR only, on loopback."""
    binary = shutil.which("clamd") or (
        "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None
    )
    if binary is None:
        _missing("clamd", "apt-get install -y --no-install-recommends clamav-daemon")
    assert binary is not None
    folder = tmp_path_factory.mktemp("clamd")
    database = folder / "db"
    database.mkdir()
    # A body signature (.ndb: name:target type:offset:hex), matched anywhere in any file.
    (database / "framework-test.ndb").write_text(f"Framework.Test.EICAR:0:*:{EICAR.hex()}\n")
    port = _free_port()
    unix = folder / "clamd.sock"
    config = folder / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                "Foreground yes",
                f"DatabaseDirectory {database}",
                "TCPAddr 127.0.0.1",
                f"TCPSocket {port}",
                f"LocalSocket {unix}",
                "StreamMaxLength 1M",
                f"LogFile {folder / 'clamd.log'}",
                f"PidFile {folder / 'clamd.pid'}",
                "",
            ]
        )
    )
    log = folder / "clamd.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for("clamd", port, process, log, 30)
        yield ClamdService(f"127.0.0.1:{port}", unix, config)
    finally:
        _stop(process)


@dataclass(frozen=True)
class SpamdService:
    """A running spamd: its ``host:port``."""

    address: str


SPAMD_RULES = r"""
loadplugin Mail::SpamAssassin::Plugin::Check
required_score 5.0
use_bayes 0
body GTUBE /XJS\*C4JDBQADN1\.NSBN3\*2IDNEN\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\*C\.34X/
describe GTUBE Generic Test for Unsolicited Bulk Email
score GTUBE 1000
"""


@pytest.fixture(scope="session")
def spamd() -> Iterator[SpamdService]:
    """spamd (Debian's spamd) with the GTUBE rule only and no network tests, on loopback."""
    binary = shutil.which("spamd") or (
        "/usr/sbin/spamd" if Path("/usr/sbin/spamd").exists() else None
    )
    if binary is None:
        _missing("spamd", "apt-get install -y --no-install-recommends spamassassin spamd")
    assert binary is not None
    # spamd drops to 'nobody', who must read the rules: not under pytest's 0700 folders.
    folder = Path(tempfile.mkdtemp(prefix="framework-spamd-"))
    folder.chmod(0o755)
    rules = folder / "rules"
    site = folder / "site"
    rules.mkdir(mode=0o755)
    site.mkdir(mode=0o755)
    (rules / "10_framework_test.cf").write_text(SPAMD_RULES)
    (rules / "10_framework_test.cf").chmod(0o644)
    port = _free_port()
    command = [
        binary,
        "-C", str(rules),
        "--siteconfigpath", str(site),
        "--nouser-config",
        "-L",  # local tests only: no DNS blocklists, no Razor/Pyzor
        "-i", "127.0.0.1",
        "-p", str(port),
        "-m", "2",
        "--min-spare", "1",
        "--max-spare", "1",
        "-r", str(folder / "spamd.pid"),
        "-s", "stderr",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    log = folder / "spamd.out"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for("spamd", port, process, log, 60)
        yield SpamdService(f"127.0.0.1:{port}")
    finally:
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


# --- DNS --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DKIMKey:
    """An RSA signing key: its PEM private half, and the TXT record publishing the public one."""

    private: bytes
    record: bytes


@pytest.fixture(scope="session")
def dkim_key() -> DKIMKey:
    """A 2048-bit RSA key for DKIM (dkimpy refuses keys under 1024 bits)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DKIMKey(private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public))


@dataclass
class DNSZone:
    """The test zone's server: where it listens, and its records (editable while it runs)."""

    host: str
    port: int
    records: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    queries: list[str] = field(default_factory=list)

    def txt(self, name: str, *values: bytes) -> None:
        """Publish TXT records at ``name`` (each split in 255-byte strings, as DNS needs)."""
        from dnslib import TXT

        self.records[(name.lower().rstrip("."), "TXT")] = [
            TXT([v[i : i + 255] for i in range(0, len(v), 255)]) for v in values
        ]

    def a(self, name: str, *addresses: str) -> None:
        """Publish A records at ``name``."""
        from dnslib import A

        self.records[(name.lower().rstrip("."), "A")] = [A(a) for a in addresses]


def _zone(zone: DNSZone, key: DKIMKey) -> None:
    """The records the tests use: one sender domain per SPF and DMARC outcome."""
    zone.txt("pass.test", b"v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("_dmarc.pass.test", b"v=DMARC1; p=reject")
    zone.txt("sel._domainkey.pass.test", key.record)
    zone.txt("fail.test", b"v=spf1 -all")
    zone.txt("_dmarc.fail.test", b"v=DMARC1; p=reject")
    zone.txt("softfail.test", b"v=spf1 ~all")
    zone.txt("_dmarc.softfail.test", b"v=DMARC1; p=quarantine")
    zone.txt("spfonly.test", b"v=spf1 ip4:127.0.0.0/8 -all")  # and no DMARC policy
    zone.txt("neutral.test", b"v=spf1 ?all")
    zone.txt("_dmarc.neutral.test", b"v=DMARC1; p=none")
    # none.test publishes nothing at all; servfail.test's server is broken.
    zone.failing.add("servfail.test")
    # The blocklist lists 127.0.0.2, RFC 5782's test address, and never 127.0.0.1.
    zone.a("2.0.0.127.bl.test", "127.0.0.2")


def serve(zone: DNSZone, port: int = 0) -> Any:
    """A dnslib ``DNSServer`` answering from ``zone`` on loopback (``port`` 0: a free one)."""
    from dnslib import QTYPE, RCODE, RR
    from dnslib.server import BaseResolver, DNSServer

    class ZoneResolver(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            name = str(request.q.qname).lower().rstrip(".")
            qtype = QTYPE[request.q.qtype]
            zone.queries.append(f"{name} {qtype}")
            if any(name == f or name.endswith("." + f) for f in zone.failing):
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            answers = zone.records.get((name, qtype), [])
            for rdata in answers:
                reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
            if not answers and not any(n == name for n, _ in zone.records):
                reply.header.rcode = RCODE.NXDOMAIN
            return reply

    class QuietLogger:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: None

    # dnslib binds the port it is given: pick a free one, and try again if it was taken since.
    for _ in range(5):
        chosen = port or _free_port()
        try:
            server = DNSServer(ZoneResolver(), port=chosen, address=zone.host, logger=QuietLogger())
        except OSError:
            if port:
                raise
            continue
        zone.port = chosen
        return server
    pytest.fail("no free loopback UDP port for the test DNS server")


@pytest.fixture(scope="session")
def dns_zone(dkim_key: DKIMKey) -> Iterator[DNSZone]:
    """A DNS server (dnslib) on a free loopback UDP port, serving the ``.test`` zone."""
    try:
        import dnslib  # noqa: F401
    except ImportError:
        _missing("dnslib", "pip install dnslib (in the dev extra)")
    zone = DNSZone("127.0.0.1", 0)
    _zone(zone, dkim_key)
    server = serve(zone)
    server.start_thread()
    try:
        yield zone
    finally:
        server.stop()
        server.server.server_close()
