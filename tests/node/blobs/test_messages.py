"""The blob peer messages' codec: every message round-trips; any other bytes are BadBlobMessage, never a crash."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from core import codec
from core.blobs import MAX_CHUNKS, BlobRef
from core.errors import BadBlobMessage
from node.blobs import messages
from node.blobs.messages import Chunk, Get, Have, Missing

REFS = st.builds(BlobRef, sha256=st.binary(min_size=32, max_size=32), size=st.integers(1, 1 << 29),
                 chunk_root=st.binary(min_size=32, max_size=32))
INDEXES = st.integers(0, MAX_CHUNKS - 1)
MESSAGES = st.one_of(
    st.builds(Have, ref=REFS), st.builds(Get, ref=REFS, index=INDEXES), st.builds(Missing, ref=REFS, index=INDEXES),
    st.builds(Chunk, ref=REFS, index=INDEXES, chunk=st.binary(max_size=64),
              proof=st.lists(st.binary(min_size=32, max_size=32), max_size=8)))


@settings(max_examples=200, deadline=None)
@given(MESSAGES)
def test_every_message_round_trips(message: messages.BlobMessage) -> None:
    assert messages.decode(messages.encode(message)) == message


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.binary(max_size=40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["t", "ref", "index", "chunk",
                                                                                  "proof", "x"]), inner, max_size=5),
    max_leaves=12).map(codec.encode)))
def test_any_other_payload_is_a_bad_blob_message(payload: bytes) -> None:
    try:
        decoded = messages.decode(payload)
    except BadBlobMessage:
        return
    assert messages.encode(decoded) == payload  # it was a well-formed message after all
