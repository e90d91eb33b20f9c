"""The layout shortcuts of core/tx.py give exactly what the full decode gives, for any transaction."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.crypto import PrivateKey
from core.tx import MAX_NONCE, Transaction, sender_of, signed_body_of

KEYS = [PrivateKey(bytes([7 + i]) * 32) for i in range(3)]

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40) | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
transactions = st.builds(
    lambda key, chain_id, nonce, module, payload: Transaction.create(key, chain_id, nonce, f"{module}.echo", payload),
    st.sampled_from(KEYS),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=64),
    st.integers(1, MAX_NONCE),
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    st.dictionaries(st.text(max_size=12), values, max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(transactions)
def test_the_fast_accessors_agree_with_the_full_decode(tx: Transaction) -> None:
    raw = tx.encode()
    decoded = Transaction.decode(raw, max_size=len(raw))
    assert sender_of(raw) == decoded.sender  # never None for a canonical transaction: the fast path is taken
    assert signed_body_of(raw, decoded) == decoded.signed_message()
    assert decoded.verify_signature(raw) and decoded.verify_signature()


def test_a_large_payload_and_a_str8_chain_id_take_the_fast_path() -> None:
    tx = Transaction.create(KEYS[0], "z" * 64, 2**40, "test.echo", {"msg": b"m" * 70000})
    raw = tx.encode()
    assert sender_of(raw) == tx.sender and signed_body_of(raw, tx) == tx.signed_message()


def test_a_tampered_encoding_is_not_cut_and_a_bad_signature_still_fails() -> None:
    tx = Transaction.create(KEYS[0], "c", 1, "test.echo", {"msg": b"hi"})
    raw = tx.encode()
    other = Transaction(tx.chain_id, tx.sender, tx.nonce, tx.kind, tx.payload, bytes(64))
    assert signed_body_of(raw, other) is None  # signature bytes differ from the tx's
    assert not other.verify_signature(other.encode())
    assert sender_of(b"\x95" + raw[1:]) is None and sender_of(raw[:20]) is None
