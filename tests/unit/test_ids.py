"""framework.ids: message ids are version 4 UUID strings, unique, also across a fork."""

from __future__ import annotations

import multiprocessing
import uuid

from framework.ids import new_message_id


def test_ids_are_version_4_uuids_formatted_as_uuid4_does() -> None:
    """Each id parses as a version 4, RFC 4122 UUID and prints back as itself; ids past one pool
    (256) are all different, and every variant digit and every random digit occurs."""
    ids = [new_message_id() for _ in range(5_000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    assert len(set(ids)) == len(ids)
    assert {text[19] for text in ids} == set("89ab")
    assert {text[0] for text in ids} == set("0123456789abcdef")


def _child_ids(out: multiprocessing.Queue[list[str]]) -> None:
    out.put([new_message_id() for _ in range(10)])


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """The pool is emptied in a forked child: what it hands out is not what the parent does."""
    new_message_id()  # the parent's pool is filled
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_ids, args=(out,))
    child.start()
    theirs = out.get(timeout=30)
    child.join(30)
    ours = [new_message_id() for _ in range(10)]
    assert not set(theirs) & set(ours)
