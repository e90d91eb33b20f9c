"""Before a p2p connection authenticates, its frames are bounded by the handshake's own (issue 17).

The bound is measured here on the largest handshake there is (hybrid keys: an ML-KEM-768 hello and an
Ed25519 + ML-DSA-65 ``auth``), and the header reader is checked against every way the bytes can be cut.
``tests/integration/test_p2p_attacks.py`` sends an oversized frame to a real validator.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from core.crypto import HybridPrivateKey
from node.transport.preauth import PREAUTH_MAX_BYTES, PREAUTH_MAX_MESSAGE, PreAuthFrames
from tests.node.test_transport_secure import handshake_pair


def frame(payload_len: int, *, opcode: int = 0x2, fin: bool = True, masked: bool = True) -> bytes:
    """A websocket frame's header for ``payload_len`` bytes, then that many bytes (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | opcode
    mask = 0x80 if masked else 0
    if payload_len < 126:
        head = bytes([first, mask | payload_len])
    elif payload_len < 1 << 16:
        head = bytes([first, mask | 126]) + payload_len.to_bytes(2, "big")
    else:
        head = bytes([first, mask | 127]) + payload_len.to_bytes(8, "big")
    return head + (os.urandom(4) if masked else b"") + bytes(payload_len)


def test_the_largest_handshake_fits_the_bound_measured_on_hybrid_keys() -> None:
    a, d = HybridPrivateKey.generate(), HybridPrivateKey.generate()
    acceptor, dialer = handshake_pair(a, d, {a.public_key.raw: a.public_key, d.public_key.raw: d.public_key})
    hello, auth = dialer.receive(acceptor.opening() or b"")
    assert acceptor.receive(hello) == [] and acceptor.receive(auth) and acceptor.session is not None
    sizes = (len(hello), len(auth))
    print(f"hybrid dialer frames: hello {sizes[0]} B, sealed auth {sizes[1]} B; bound {PREAUTH_MAX_MESSAGE} B")
    assert max(sizes) <= PREAUTH_MAX_MESSAGE < 8 * max(sizes)  # fits, and not by a 16 MiB margin
    guard = PreAuthFrames()
    assert guard.feed(frame(len(hello)) + frame(len(auth)) + frame(4, opcode=0x9))  # hello, auth, a ping


def test_an_oversized_message_is_refused_from_its_header_alone() -> None:
    guard = PreAuthFrames()
    header = frame(16 << 20)[:14]  # the 8-byte length and the mask: no payload yet
    assert not guard.feed(header) and "16777216-byte message" in (guard.refused or "")
    assert not guard.feed(b"more")  # once refused, always refused


def test_fragments_add_up_to_one_message_and_control_frames_do_not_count() -> None:
    half = PREAUTH_MAX_MESSAGE // 2 + 1
    guard = PreAuthFrames()
    assert guard.feed(frame(half, fin=False) + frame(4, opcode=0x9))  # a ping between fragments
    assert not guard.feed(frame(half, opcode=0x0)[:14])
    assert PreAuthFrames().feed(frame(half) + frame(half))  # two whole messages of that size are fine


def test_the_bytes_before_authentication_are_bounded_in_all() -> None:
    guard = PreAuthFrames()
    many = b"".join(frame(1000) for _ in range(PREAUTH_MAX_BYTES // 1000 + 1))
    assert not guard.feed(many) and "before authenticating" in (guard.refused or "")


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, PREAUTH_MAX_MESSAGE + 10), min_size=1, max_size=4),
       masked=st.booleans(), cuts=st.lists(st.integers(1, 4000), max_size=20))
def test_the_verdict_does_not_depend_on_how_the_bytes_are_cut(sizes: list[int], masked: bool,
                                                             cuts: list[int]) -> None:
    data = b"".join(frame(n, masked=masked) for n in sizes)
    whole = PreAuthFrames(max_bytes=1 << 30)
    expected = whole.feed(data)
    assert expected == all(n <= PREAUTH_MAX_MESSAGE for n in sizes)
    pieces, i = [], 0
    for cut in cuts:
        pieces.append(data[i:i + cut])
        i += cut
    pieces.append(data[i:])
    chunked = PreAuthFrames(max_bytes=1 << 30)
    assert all(chunked.feed(p) for p in pieces) == expected
