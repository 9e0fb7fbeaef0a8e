"""A newsletter: subscribe over HTTP, unsubscribe by mail, each confirmed by mail.

Run it on the memory backend (HTTP on http://127.0.0.1:8000, SMTP on 127.0.0.1:8025):

    framework run examples.newsletter:app

Subscribe with ``curl -X POST localhost:8000/subscribe -H 'content-type: application/json'
-d '{"email": "reader@example.org"}'``; unsubscribe by sending any mail from that address to
``unsubscribe@news.example`` through 127.0.0.1:8025. Set ``FRAMEWORK_MAIL_RELAY`` (for example
``smtp+starttls://user:password@smtp.example.org:587``) to send the confirmations for real;
without it they stay in the memory backend's outbox.
"""

from __future__ import annotations

from pydantic import BaseModel, field_validator

from framework import App, Context, Email, MailError
from framework.smtp import RelayConfig, SMTPConfig, check_address

# --8<-- [start:config]
SMTP = SMTPConfig(
    hostname="mx.news.example",
    max_size=1024 * 1024,  # 1 MiB: unsubscribe requests are small
    max_recipients=10,
    max_line_length=1001,
    # Blocked ranges win over allowed ones; with no allow list, every other address may send.
    block=["192.0.2.0/24", "2001:db8:bad::/48"],
)

app = App(
    "newsletter",
    mail_from="news@news.example",
    smtp=SMTP,
    mail_relay=RelayConfig.from_env(),  # None unless FRAMEWORK_MAIL_RELAY is set
)
# --8<-- [end:config]

UNSUBSCRIBE = "unsubscribe@news.example"

# The subscriber list. A real newsletter would use a database; module state keeps the
# example to one file and one process.
SUBSCRIBERS: set[str] = set()


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
@app.on_email(recipients=[UNSUBSCRIBE], stop=True, max_receive_count=3)
async def unsubscribe(mail: Email, ctx: Context) -> None:
    """Remove the sender from the list and confirm by mail.

    Only subscribers get an answer: replying to any sender would send mail to whatever
    address a spammer forges (backscatter).
    """
    sender = mail.from_.lower()
    if sender not in SUBSCRIBERS:
        ctx.logger.info("newsletter.unknown_sender", extra={"fields": {"sender": sender}})
        return
    SUBSCRIBERS.discard(sender)
    await app.mail.send(
        sender,
        "You are unsubscribed",
        text="You will not get the newsletter any more. Subscribe again at any time.\n",
    )


# --8<-- [end:unsubscribe]
