"""``import framework`` (and an HTTP and queue app bound for Lambda) leaves the mail parser,
the receiver's scanners and PyJWT/cryptography unloaded: each loads with its first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Loaded only when the app receives mail, scans it or verifies a JWT.
LAZY = (
    "framework.smtp.parsing",
    "framework.smtp.scanners._auth",
    "framework.smtp.scanners._content",
    "email.policy",
    "jwt",
    "cryptography",
)


def _loaded(code: str) -> list[str]:
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(",".join(m for m in {LAZY!r} if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return [m for m in done.stdout.strip().split(",") if m]


def test_import_framework_loads_none_of_the_lazy_modules() -> None:
    assert _loaded("import framework, framework.aws, framework.gateway") == []


def test_an_http_and_queue_lambda_app_loads_none_of_them() -> None:
    code = """
        from pydantic import BaseModel
        from framework import App
        from framework.aws import lambda_handler

        class Order(BaseModel):
            id: str

        app = App("lazy")

        @app.route("/orders", methods=["POST"])
        async def create(order: Order) -> dict[str, str]:
            return {"id": order.id}

        @app.on_queue("orders")
        async def consume(order: Order) -> None:
            pass

        handler = lambda_handler(app)
    """
    assert _loaded(code) == []


def test_the_lazy_names_still_import_and_load_on_first_use() -> None:
    code = """
        from framework import Email
        from framework.gateway import JWTAuth, JWTKey
        from framework.smtp.scanners import clamav, spf
        JWTAuth(JWTKey("k" * 32, "HS256"))
    """
    assert sorted(_loaded(code)) == sorted(LAZY)
