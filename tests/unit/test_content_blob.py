"""Blobs: what the agent is sent for a content, and how it is held until then."""

from __future__ import annotations

import hashlib

import pytest

from driftctl import content
from driftctl.content import blob_of


@pytest.mark.parametrize("text", ["", "plain ascii\n", "é€😀 non-ASCII\n", "x" * 5000])
def test_a_text_content_is_sent_as_its_utf8_bytes_with_their_hash_and_size(text: str) -> None:
    data = text.encode("utf-8")
    blob = blob_of(text)
    assert (blob.sha256, blob.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert b"".join(blob.chunks()) == data


def test_a_text_content_is_held_as_the_catalog_holds_it_not_copied_as_bytes() -> None:
    text = "line\n" * 1000
    blob = blob_of(text)
    assert blob.data is None and blob.text is text


def test_bytes_are_held_as_given_and_cut_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content, "CHUNK", 3)
    data = b"0123456789"
    blob = blob_of(data)
    assert blob.data is data and blob.text is None
    assert list(blob.chunks()) == [b"012", b"345", b"678", b"9"]
    text_blob = blob_of("0123456789")
    assert list(text_blob.chunks()) == [b"012", b"345", b"678", b"9"]
