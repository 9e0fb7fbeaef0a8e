"""Per-rule scan actions: ``@app.on_email(..., reject_on=..., drop_on=...)``."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping

import pytest

from framework import App, DeclarationError, Email
from framework.exceptions import ConfigError
from framework.smtp import SMTPConfig
from framework.smtp.parsing import Envelope
from framework.testing import TestApp

from .conftest import mail, sendmail


async def eicar(raw: bytes, envelope: Envelope) -> Mapping[str, str]:
    """Virus-fails mail containing EICAR, spam-fails mail containing 'viagra'."""
    return {
        "virus": "FAIL" if b"EICAR" in raw else "PASS",
        "spam": "FAIL" if b"viagra" in raw else "PASS",
    }


def two_rules() -> tuple[App, dict[str, list[Email]]]:
    """Support drops spam and rejects viruses; the archive takes every mail to the domain."""
    # --8<-- [start:rules]
    app = App("rules", smtp=SMTPConfig(scanners=[eicar]))
    seen: dict[str, list[Email]] = {"support": [], "archive": []}

    @app.on_email(
        ["support@shop.example"], drop_on={"spam": ["FAIL"]}, reject_on={"virus": ["FAIL"]}
    )
    async def support(message: Email) -> None:
        seen["support"].append(message)

    @app.on_email(["shop.example"])  # the archive keeps spam: it has no drop_on
    async def archive(message: Email) -> None:
        seen["archive"].append(message)

    # --8<-- [end:rules]
    return app, seen


async def test_drop_on_keeps_the_mail_from_that_rule_only() -> None:
    """A spam verdict drops the mail from support's queue; the archive still gets it; 250."""
    app, seen = two_rules()
    async with TestApp(app) as t:
        assert t.receiver is not None
        refused = await sendmail(t.receiver.port, mail(body="cheap viagra"))
        await t.drain()
    assert refused == {}
    assert [len(seen["support"]), len(seen["archive"])] == [0, 1]


async def test_drop_on_the_only_rule_accepts_and_delivers_nowhere() -> None:
    """A mail every reached rule drops is answered 250 and handled by no one."""
    app = App("one-rule", smtp=SMTPConfig(scanners=[eicar]))
    seen: list[Email] = []

    @app.on_email(["support@shop.example"], drop_on={"spam": ["FAIL"]})
    async def support(message: Email) -> None:
        seen.append(message)

    async with TestApp(app) as t:
        assert t.receiver is not None
        refused = await sendmail(t.receiver.port, mail(body="viagra"))
        await sendmail(t.receiver.port, mail(body="hello"))
        await t.drain()
    assert refused == {}
    assert [m.text for m in seen] == ["hello\r\n"]


async def test_reject_on_refuses_the_whole_mail_with_550() -> None:
    """A virus verdict on support's rule refuses the mail for every recipient with 550 5.7.1."""
    app, seen = two_rules()
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPDataError) as caught:
            await sendmail(t.receiver.port, mail(body="EICAR"))
        await t.drain()
    assert caught.value.smtp_code == 550
    assert b"virus=FAIL" in caught.value.smtp_error
    assert seen == {"support": [], "archive": []}


async def test_rule_actions_only_apply_to_mail_reaching_the_rule() -> None:
    """A virus to the archive alone is delivered: only support rejects viruses."""
    app, seen = two_rules()
    async with TestApp(app) as t:
        assert t.receiver is not None
        refused = await sendmail(
            t.receiver.port, mail(to="sales@shop.example", body="EICAR"), to="sales@shop.example"
        )
        await t.drain()
    assert refused == {}
    assert [len(seen["support"]), len(seen["archive"])] == [0, 1]


async def test_clean_mail_reaches_every_rule() -> None:
    """Without a verdict acted on, both rules get the mail."""
    app, seen = two_rules()
    async with TestApp(app) as t:
        assert t.receiver is not None
        await sendmail(t.receiver.port, mail(body="hello"))
        await t.drain()
    assert [len(seen["support"]), len(seen["archive"])] == [1, 1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reject_on": {"colour": ["FAIL"]}}, "unknown check 'colour'"),
        ({"drop_on": {"spam": ["NOPE"]}}, "unknown verdict"),
    ],
)
def test_bad_rule_actions_fail_at_declaration(options: dict[str, object], message: str) -> None:
    """An unknown check or verdict fails when the rule is declared."""
    app = App("bad")
    with pytest.raises(DeclarationError, match=message):

        @app.on_email(["a@shop.example"], **options)  # type: ignore[arg-type]
        async def handle(message: Email) -> None: ...


async def test_rule_actions_without_scanners_fail_at_start() -> None:
    """Actions on verdicts no scanner gives are refused when the receiver starts."""
    app = App("unscanned", smtp=SMTPConfig())

    @app.on_email(["a@shop.example"], drop_on={"spam": ["FAIL"]})
    async def handle(message: Email) -> None: ...

    with pytest.raises(ConfigError, match="no scanners"):
        async with TestApp(app):
            pass
