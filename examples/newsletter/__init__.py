"""A newsletter: subscribe over HTTP, unsubscribe by mail, each confirmed by mail.

Run it on the memory backend (HTTP on http://127.0.0.1:8000, SMTP on 127.0.0.1:8025):

    framework run examples.newsletter:app

Subscribe with ``curl -X POST localhost:8000/subscribe -H 'content-type: application/json'
-d '{"email": "reader@example.org"}'``; unsubscribe by sending any mail from that address to
``unsubscribe@news.example`` through 127.0.0.1:8025. Set ``FRAMEWORK_MAIL_RELAY`` (for example
``smtp+starttls://user:password@smtp.example.org:587``) to send the confirmations for real;
without it they stay in the memory backend's outbox.

The From header of a mail is whatever its sender typed, so an unsubscribe request is believed
only when DMARC passed (SPF or DKIM vouched for the From domain) or SPF passed for the same
domain; any other request is answered with a confirmation link, which only the subscriber
receives. Set ``NEWSLETTER_CLAMD`` (``127.0.0.1:3310``) and ``NEWSLETTER_SPAMD``
(``127.0.0.1:783``) to refuse viruses and spam with ClamAV and SpamAssassin running beside it,
``NEWSLETTER_DNS`` (``127.0.0.1:53``) to send the SPF, DKIM and DMARC lookups to that resolver
instead of the system's, and ``NEWSLETTER_URL`` to the address the links should point at.
"""

from __future__ import annotations

import html
import os
import secrets

from pydantic import BaseModel, field_validator
from starlette.responses import HTMLResponse, JSONResponse

from framework import App, Context, Email, MailError
from framework.smtp import RelayConfig, Scanner, SMTPConfig, Verdict, check_address
from framework.smtp.scanners import clamav, dkim, dmarc, spamassassin, spf


# --8<-- [start:config]
def scanners(clamd: str | None = None, spamd: str | None = None) -> list[Scanner]:
    """Sender authentication always; viruses and spam when their daemons are given."""
    chosen: list[Scanner] = [spf(), dkim(), dmarc()]
    if clamd:
        chosen.append(clamav(clamd))
    if spamd:
        chosen.append(spamassassin(spamd))
    return chosen


DNS_HOST, _, DNS_PORT = os.environ.get("NEWSLETTER_DNS", "").rpartition(":")

SMTP = SMTPConfig(
    hostname="mx.news.example",
    max_size=1024 * 1024,  # 1 MiB: unsubscribe requests are small
    max_recipients=10,
    max_line_length=1001,
    # Blocked ranges win over allowed ones; with no allow list, every other address may send.
    block=["192.0.2.0/24", "2001:db8:bad::/48"],
    scanners=scanners(os.environ.get("NEWSLETTER_CLAMD"), os.environ.get("NEWSLETTER_SPAMD")),
    # 550 5.7.1 for a virus, for spam, and for a forgery its domain asks to be refused.
    reject_on={"virus": ["FAIL"], "spam": ["FAIL"], "dmarc_policy": ["reject"]},
    dns_servers=[DNS_HOST] if DNS_HOST else [],
    dns_port=int(DNS_PORT) if DNS_HOST else 53,
)

app = App(
    "newsletter",
    mail_from="news@news.example",
    smtp=SMTP,
    mail_relay=RelayConfig.from_env(),  # None unless FRAMEWORK_MAIL_RELAY is set
)
# --8<-- [end:config]

UNSUBSCRIBE = "unsubscribe@news.example"
BASE_URL = os.environ.get("NEWSLETTER_URL", "http://127.0.0.1:8000")

# The subscriber list, and the unsubscribe requests waiting for their link to be followed
# (token -> address). A real newsletter would use a database; module state keeps the example
# to one file and one process.
SUBSCRIBERS: set[str] = set()
PENDING: dict[str, str] = {}


# --8<-- [start:subscribe]
class Subscription(BaseModel):
    email: str

    @field_validator("email")
    @classmethod
    def plain_address(cls, value: str) -> str:
        """Accept one plain ``user@domain``: the address a confirmation will be sent to."""
        try:
            return check_address(value.strip()).lower()
        except MailError as exc:
            raise ValueError(str(exc)) from None


@app.route("/subscribe", methods=["POST"], status_code=202)
async def subscribe(subscription: Subscription) -> dict[str, str]:
    """Add the address to the list and send it a confirmation (422 for a bad address)."""
    SUBSCRIBERS.add(subscription.email)
    await app.mail.send(
        subscription.email,
        "Welcome to the newsletter",
        text=(
            "You are subscribed to the newsletter.\n"
            f"To unsubscribe, send any mail to {UNSUBSCRIBE}.\n"
        ),
        headers={"List-Unsubscribe": f"<mailto:{UNSUBSCRIBE}>"},
    )
    return {"subscribed": subscription.email}


# --8<-- [end:subscribe]
# --8<-- [start:unsubscribe]
def from_its_domain(mail: Email) -> bool:
    """True when the mail provably comes from its From header's domain.

    DMARC passes when SPF or a DKIM signature vouched for the From domain (aligned); a domain
    without a DMARC policy still counts when SPF passed for that very domain.
    """
    domain = mail.from_.rpartition("@")[2].lower()
    envelope_domain = mail.envelope.mail_from.rpartition("@")[2].lower()
    return mail.verdicts.dmarc is Verdict.PASS or (
        mail.verdicts.spf is Verdict.PASS and envelope_domain == domain
    )


@app.on_email(recipients=[UNSUBSCRIBE], stop=True, max_receive_count=3)
async def unsubscribe(mail: Email, ctx: Context) -> None:
    """Remove a subscriber whose request is authenticated; mail the others a link to confirm.

    Only subscribers get an answer: replying to any sender would send mail to whatever
    address a spammer forges (backscatter). A forged request only reaches the real
    subscriber, as a link they can ignore.
    """
    sender = mail.from_.lower()
    if sender not in SUBSCRIBERS:
        ctx.logger.info("newsletter.unknown_sender", extra={"fields": {"sender": sender}})
        return
    if from_its_domain(mail):
        await goodbye(sender)
        return
    token = secrets.token_urlsafe(24)
    PENDING[token] = sender
    ctx.logger.info("newsletter.confirm_sent", extra={"fields": {"verdicts": str(mail.verdicts)}})
    await app.mail.send(
        sender,
        "Confirm to unsubscribe",
        text=f"Follow this link to stop the newsletter: {BASE_URL}/unsubscribe/{token}\n",
    )


async def goodbye(address: str) -> None:
    """Take ``address`` off the list and tell it so."""
    SUBSCRIBERS.discard(address)
    await app.mail.send(
        address,
        "You are unsubscribed",
        text="You will not get the newsletter any more. Subscribe again at any time.\n",
    )


@app.route("/unsubscribe/{token}", methods=["GET"])
async def confirm_page(token: str) -> HTMLResponse:
    """The link shows a button; nothing changes on GET, since mail scanners follow links."""
    if token not in PENDING:
        return HTMLResponse("<p>This link is unknown or was used already.</p>", status_code=404)
    action = f"{BASE_URL}/unsubscribe/{html.escape(token)}"
    return HTMLResponse(
        f'<form method="post" action="{action}"><button>Unsubscribe</button></form>'
    )


@app.route("/unsubscribe/{token}", methods=["POST"])
async def confirm(token: str) -> JSONResponse:
    """Unsubscribe the address the token was mailed to (once; 404 for an unknown token)."""
    address = PENDING.pop(token, None)
    if address is None:
        return JSONResponse({"detail": "unknown or used link"}, status_code=404)
    await goodbye(address)
    return JSONResponse({"unsubscribed": address})


# --8<-- [end:unsubscribe]
