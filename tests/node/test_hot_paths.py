"""The shortcuts the node's hot paths take give exactly what the long way gives."""

from __future__ import annotations

import pytest

from core.crypto import PrivateKey
from core.tx import Transaction
from node.execution import SignatureCache, signed_body
from node.rpc.methods import _leading_sender

KEY = PrivateKey(bytes([7]) * 32)


@pytest.mark.parametrize("chain_id", ["c", "fbci-local", "x" * 31, "y" * 32, "z" * 64])
@pytest.mark.parametrize("payload", [{}, {"msg": b""}, {"msg": b"m" * 300}, {"msg": b"m" * 70000},
                                     {"a": [1, 2, {"b": "c"}], "z": None}])
def test_signed_body_and_sender_are_cut_exactly_from_the_encoding(chain_id, payload) -> None:
    tx = Transaction.create(KEY, chain_id, 2**40, "test.echo", payload)
    raw = tx.encode()
    assert signed_body(raw, tx) == tx.signed_message()
    assert _leading_sender(raw) == tx.sender
    assert SignatureCache().verify(tx, None, raw)


def test_a_tampered_encoding_is_not_cut_and_a_bad_signature_still_fails() -> None:
    tx = Transaction.create(KEY, "c", 1, "test.echo", {"msg": b"hi"})
    raw = tx.encode()
    other = Transaction(tx.chain_id, tx.sender, tx.nonce, tx.kind, tx.payload, bytes(64))
    assert signed_body(raw, other) is None  # signature bytes differ from the tx's
    forged = other.encode()
    assert not SignatureCache().verify(other, None, forged)
    assert _leading_sender(b"\x95" + raw[1:]) is None and _leading_sender(raw[:20]) is None
