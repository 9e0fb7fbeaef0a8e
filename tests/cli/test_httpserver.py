"""`framework run`'s own HTTP/1.1 parser: plain requests here, anything else handed to h11."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Receive, Scope, Send

from framework.cli.http11 import TimedH11Protocol
from framework.cli.httpserver import HTTPProtocol, protocol_class
from tests.cli.test_http11 import FakeTransport, answered
from tests.cli.test_http11 import app as timing_app
from tests.cli.test_http11 import connect as http11_connect

GET = b"GET /known HTTP/1.1\r\nHost: t\r\n\r\n"


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers what it saw of the request as JSON; /known and friends as in test_http11."""
    if scope["path"] in ("/known", "/streamed", "/fails"):
        await timing_app(scope, receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "body": body.decode(),
        "version": scope["http_version"],
    }
    out = json.dumps(seen).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(out)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


def connect(
    read_timeout: float = 10.0, keep_alive: float = 5.0
) -> tuple[HTTPProtocol, FakeTransport]:
    protocol, transport = http11_connect(protocol_class, read_timeout, keep_alive, echo)
    assert isinstance(protocol, HTTPProtocol)
    return protocol, transport


def bodies(transport: FakeTransport) -> list[dict[str, Any]]:
    """The JSON bodies of every response written so far."""
    out = b"".join(transport.writes)
    return [
        json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1 ")[0])
        for part in out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    ]


async def test_a_streamed_response_is_chunked_and_sends_its_head_first() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET /streamed HTTP/1.1\r\nHost: t\r\n\r\n")
    await answered(transport, 1)
    assert b"late" not in b"".join(transport.writes)
    assert b"transfer-encoding: chunked\r\n" in transport.writes[0]
    await asyncio.sleep(0.1)
    assert b"".join(transport.writes).endswith(b"\r\n\r\n4\r\nlate\r\n0\r\n\r\n")
    protocol.connection_lost(None)


async def test_the_scope_carries_the_parsed_request() -> None:
    protocol, transport = connect()
    protocol.data_received(
        b"POST /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: t\r\nX-Key:  v a l \t\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    await answered(transport, 1)
    [seen] = bodies(transport)
    assert seen["method"] == "POST"
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == "/a%20b/c"
    assert seen["query"] == "x=1&y=%41"
    assert ["x-key", "v a l"] in seen["headers"]  # names lowercased, values stripped
    assert seen["body"] == "hello"
    protocol.connection_lost(None)


async def test_a_body_in_pieces_and_pipelined_requests_are_answered_in_order() -> None:
    protocol, transport = connect()
    protocol.data_received(b"POST /one HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab")
    await asyncio.sleep(0.01)
    assert not transport.writes  # the body is not whole yet
    protocol.data_received(b"cd")
    protocol.data_received(
        b"efGET /two HTTP/1.1\r\nHost: t\r\n\r\nGET /three?q HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    await answered(transport, 3)
    assert [(s["path"], s["body"]) for s in bodies(transport)] == [
        ("/one", "abcdef"),
        ("/two", ""),
        ("/three", ""),
    ]
    assert not transport.closed
    protocol.connection_lost(None)


async def test_connection_close_closes_after_the_answer() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await answered(transport, 1)
    assert b"connection: close\r\n" in transport.writes[0]
    assert transport.closed


async def test_a_head_request_gets_headers_only() -> None:
    protocol, transport = connect()
    protocol.data_received(b"HEAD /known HTTP/1.1\r\nHost: t\r\n\r\n")
    await answered(transport, 1)
    assert transport.writes[0].endswith(b"content-length: 2\r\n\r\n")
    protocol.connection_lost(None)


async def test_a_chunked_request_is_handed_to_h11_which_answers_it() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
    await answered(transport, 1)
    protocol.data_received(
        b"POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    await answered(transport, 2)
    assert isinstance(transport.protocol, TimedH11Protocol)
    assert transport.protocol.read_timeout == protocol.read_timeout
    assert protocol not in protocol.connections
    assert transport.protocol in protocol.connections
    assert bodies(transport)[-1]["body"] == "abc"
    transport.protocol.connection_lost(None)


async def test_a_malformed_head_gets_h11s_400() -> None:
    for head in (
        b"GET /x HTTP/1.1\r\nHost: t\r\nBad Header: v\r\n\r\n",
        b"GET /x HTTP/1.1\r\n\r\n",  # no Host
        b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
    ):
        protocol, transport = connect()
        protocol.data_received(head)
        await asyncio.sleep(0.01)
        assert b"".join(transport.writes).startswith(b"HTTP/1.1 400 "), head
        assert transport.closed


async def test_http_1_0_and_odd_header_values_are_served_by_h11() -> None:
    for head in (
        b"GET /x HTTP/1.0\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n",  # h11 lets this one through
        b"GET /x HTTP/1.1\nHost: t\n\n",  # bare line feeds
        b"GET /x HTTP/1.1\r\nHost: t\n\r\n",
    ):
        protocol, transport = connect()
        protocol.data_received(head)
        await asyncio.sleep(0.01)
        assert isinstance(transport.protocol, TimedH11Protocol)
        assert b"".join(transport.writes).startswith(b"HTTP/1.1 200 ")


async def test_a_client_gone_mid_body_is_told_so() -> None:
    protocol, _ = connect()
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
    await asyncio.sleep(0.01)
    cycle = protocol.cycle
    assert cycle is not None
    protocol.connection_lost(None)
    assert cycle.disconnected
    assert await cycle.receive() == {"type": "http.disconnect"}


async def test_a_head_larger_than_h11_allows_gets_h11s_answer() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET /x HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 20_000)
    await asyncio.sleep(0.01)
    assert isinstance(transport.protocol, TimedH11Protocol)
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 4")
    assert transport.closed
