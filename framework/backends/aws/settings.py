"""The ``aws://`` URL: region, emulator endpoint, credentials and the backend's own options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from framework.exceptions import ConfigError
from framework.redact import mask_url

__all__ = ["AWSSettings", "Filtering", "physical_name"]

Filtering = Literal["native", "subscriber"]

_OPTIONS = {
    "endpoint_url",
    "declare",
    "filtering",
    "mail_rules",
    "max_attempts",
    "max_connections",
    "profile",
}
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# The environment variables that give the standard chain credentials without any file or
# network look-up; with an emulator and none of them set, dummy credentials are used instead.
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
DUMMY_CREDENTIAL = "testing"


def physical_name(name: str) -> str:
    """Return the SQS queue or SNS topic name that carries the framework name ``name``.

    SQS and SNS names allow letters, digits, ``-`` and ``_`` (plus a ``.fifo`` suffix), while
    framework names also allow dots (subscription queues are ``TOPIC.SUBSCRIPTION``): every
    dot before the suffix becomes ``_``. ``orders.billing`` is ``orders_billing`` on AWS, and
    ``orders.billing.fifo`` is ``orders_billing.fifo``. The length is unchanged.
    """
    stem, fifo = (name[:-5], ".fifo") if name.endswith(".fifo") else (name, "")
    return stem.replace(".", "_") + fifo


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"aws:// option {name}={value!r} must be 1 or 0")


@dataclass(frozen=True, slots=True)
class AWSSettings:
    """What ``aws://REGION?options`` asks for.

    Options:

    - ``endpoint_url``: send every request there instead of to AWS (an emulator such as
      moto or LocalStack). Without credentials in the environment, dummy ones are used.
    - ``declare``: ``0`` to create nothing: declaring a queue, topic or subscription only
      checks that it exists, and a missing one raises, naming it (for deployments whose
      resources are provisioned by CloudFormation or Terraform).
    - ``filtering``: ``native`` (default) sets each subscription's filter policy on SNS, so a
      copy a subscription does not want is never delivered; ``subscriber`` subscribes
      without a policy and drops unwanted copies when they are received, as the RabbitMQ
      backend does (for emulators whose filtering is incomplete).
    - ``mail_rules``: ``0`` to leave SES receipt rules alone: the app's ``@on_email`` rules
      then get no inbound-mail topic, subscription or receipt rule on start (for regions
      where SES does not receive mail, or mail that only comes through the SMTP receiver).
    - ``max_connections``: HTTP connections per client; default 50. Every consumer holds one
      for its long poll, so an app with many queues needs more than botocore's 10.
    - ``max_attempts``: attempts per request, the first included (botocore's standard
      retries, with backoff); default 4. An unreachable endpoint raises
      ``BackendUnavailableError`` after the last.
    - ``profile``: the profile of the shared AWS config to take credentials from.
    """

    region: str
    endpoint_url: str | None = None
    declare: bool = True
    filtering: Filtering = "native"
    mail_rules: bool = True
    max_connections: int = 50
    max_attempts: int = 4
    profile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> AWSSettings:
        """Parse ``aws://REGION?options``.

        Raises:
            ConfigError: For a URL that is not ``aws://``, a missing region or a bad option.
        """
        parts = urlsplit(url)
        if parts.scheme != "aws":
            raise ConfigError(f"not an AWS URL: {mask_url(url)!r} (expected aws://REGION?...)")
        region = (
            parts.netloc or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "")
        )
        if not _REGION.match(region):
            raise ConfigError(
                f"aws:// URL {mask_url(url)!r} needs a region such as aws://us-east-1 "
                f"(got {region!r})"
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - _OPTIONS)
        if unknown:
            raise ConfigError(
                f"aws:// URL has unknown option(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_OPTIONS))})"
            )
        endpoint = query.get("endpoint_url") or None
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(f"aws:// endpoint_url={mask_url(endpoint)!r} must be an http(s) URL")
        filtering = query.get("filtering", "native")
        if filtering not in ("native", "subscriber"):
            raise ConfigError(
                f"aws:// option filtering={filtering!r} must be 'native' or 'subscriber'"
            )
        connections = query.get("max_connections", "50")
        if not connections.isdigit() or int(connections) < 1:
            raise ConfigError(f"aws:// option max_connections={connections!r} must be 1 or more")
        attempts = query.get("max_attempts", "4")
        if not attempts.isdigit() or int(attempts) < 1:
            raise ConfigError(f"aws:// option max_attempts={attempts!r} must be 1 or more")
        return cls(
            region=region,
            endpoint_url=endpoint,
            declare=_flag("declare", query.get("declare", "1")),
            filtering="native" if filtering == "native" else "subscriber",
            mail_rules=_flag("mail_rules", query.get("mail_rules", "1")),
            max_connections=int(connections),
            max_attempts=int(attempts),
            profile=query.get("profile") or None,
        )

    def client_options(self) -> dict[str, Any]:
        """Return the keyword arguments of ``session.create_client`` besides the service name.

        Credentials come from the standard chain (environment, shared files, instance or
        task role). With an ``endpoint_url`` and no credentials in the environment, the
        dummy ``testing`` pair is passed, as emulators accept any.
        """
        options: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url is not None:
            options["endpoint_url"] = self.endpoint_url
            if self.profile is None and not any(v in os.environ for v in _CREDENTIAL_VARIABLES):
                options["aws_access_key_id"] = DUMMY_CREDENTIAL
                options["aws_secret_access_key"] = DUMMY_CREDENTIAL
        return options
