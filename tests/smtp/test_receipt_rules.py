"""Receipt rules as SES has them: in order; address, domain, .subdomain; several handlers; stop."""

from __future__ import annotations

import smtplib

import pytest

from framework import App, Email
from framework.registry import EmailRule, QueueSpec, rules_for
from framework.testing import TestApp


def rule(*recipients: str, stop: bool = False, name: str = "r") -> EmailRule:
    """A rule on a queue of its own."""
    return EmailRule(recipients, QueueSpec.from_options(f"email-{name}"), stop=stop)


@pytest.mark.parametrize(
    ("condition", "address", "matches"),
    [
        ("news@news.example", "news@news.example", True),
        ("news@news.example", "NEWS@News.Example", True),
        ("news@news.example", "other@news.example", False),
        ("news.example", "anyone@news.example", True),
        ("news.example", "a@eu.news.example", False),
        (".news.example", "a@eu.news.example", True),
        (".news.example", "a@x.eu.news.example", True),
        (".news.example", "a@news.example", False),
        (".news.example", "a@fakenews.example", False),
        ("news.example", "a@news.example.evil", False),
        ("news@news.example", '"news@news.example"@evil.example', False),
    ],
)
def test_recipient_conditions(condition: str, address: str, matches: bool) -> None:
    """An address, a domain and a .subdomain condition match as SES defines them."""
    assert bool(rules_for([rule(condition)], address)) is matches


def test_rules_match_in_order_and_a_stop_rule_ends_the_evaluation() -> None:
    """Every matching rule applies, in order, up to and including the first stop rule."""
    first = rule("shop.example", name="first")
    stopper = rule("support@shop.example", stop=True, name="stopper")
    last = rule("shop.example", name="last")
    rules = [first, stopper, last]
    assert rules_for(rules, "support@shop.example") == [first, stopper]
    assert rules_for(rules, "sales@shop.example") == [first, last]
    assert rules_for(rules, "a@elsewhere.example") == []


async def test_several_handlers_on_one_recipient_all_get_the_mail_once() -> None:
    """Handlers declared for the same recipient each get one copy, through their own queues."""
    app = App("many")
    got: list[tuple[str, str]] = []

    @app.on_email(["support@shop.example"])
    async def archive(message: Email) -> None:
        got.append(("archive", message.subject))

    @app.on_email(["shop.example"])
    async def ticket(message: Email) -> None:
        got.append(("ticket", message.subject))

    async with TestApp(app) as t:
        await t.send_email(to="support@shop.example", subject="help")
        await t.drain()
    assert sorted(got) == [("archive", "help"), ("ticket", "help")]


async def test_stop_rule_keeps_the_mail_from_later_rules() -> None:
    """After a matching stop rule, later rules do not get the mail; other recipients still do."""
    app = App("stop")
    got: list[tuple[str, tuple[str, ...]]] = []

    @app.on_email(["abuse@shop.example"], stop=True)
    async def abuse(message: Email) -> None:
        got.append(("abuse", message.envelope.rcpt_to))

    @app.on_email(["shop.example"])
    async def catch_all(message: Email) -> None:
        got.append(("catch_all", message.envelope.rcpt_to))

    async with TestApp(app) as t:
        await t.send_email(to=["abuse@shop.example", "sales@shop.example"], subject="x")
        await t.drain()
    # Each rule's queue gets only the recipients that reached it.
    assert sorted(got) == [
        ("abuse", ("abuse@shop.example",)),
        ("catch_all", ("sales@shop.example",)),
    ]


async def test_subdomain_rule_accepts_any_subdomain_and_refuses_the_rest() -> None:
    """A .subdomain rule accepts a@any.sub; the bare domain is refused with 550."""
    app = App("sub")
    got: list[str] = []

    @app.on_email([".mail.shop.example"])
    async def regional(message: Email) -> None:
        got.extend(message.envelope.rcpt_to)

    async with TestApp(app) as t:
        await t.send_email(to="team@eu.mail.shop.example")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await t.send_email(to="team@mail.shop.example")
        await t.drain()
    assert got == ["team@eu.mail.shop.example"]
