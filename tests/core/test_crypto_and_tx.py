"""Identity, domain separation, transactions, blocks."""

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.block import ZERO_HASH, Block, BlockHeader
from core.crypto import PrivateKey, sign_bytes, verify
from core.errors import DecodeError, InvalidInput, TooLarge
from core.hashing import EMPTY_ROOT, merkle_root, sha256
from core.tx import Transaction

KEY = PrivateKey(bytes(range(32)))


def test_signature_is_bound_to_chain_and_kind() -> None:
    sig = KEY.sign("chain-a", "tx", b"hello")
    assert KEY.public_key.verify("chain-a", "tx", b"hello", sig)
    assert not KEY.public_key.verify("chain-b", "tx", b"hello", sig)
    assert not KEY.public_key.verify("chain-a", "pbft.commit", b"hello", sig)
    assert not KEY.public_key.verify("chain-a", "tx", b"hellO", sig)


def test_verify_never_raises_on_garbage() -> None:
    assert not verify(b"short", b"m", b"s" * 64)
    assert not verify(bytes(32), b"m", b"s")
    assert not verify(os.urandom(32), sign_bytes("c", "k", b"m"), os.urandom(64))


def test_key_file_is_0600_and_roundtrips(tmp_path) -> None:
    path = tmp_path / "k" / "node_key.json"
    KEY.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PrivateKey.load(path).public_key == KEY.public_key
    path.chmod(0o644)
    with pytest.raises(InvalidInput, match="0600"):
        PrivateKey.load(path)


def test_tx_roundtrip_hash_and_signature() -> None:
    tx = Transaction.create(KEY, "fbci-test", 1, "test.echo", {"msg": b"x" * 10})
    data = tx.encode()
    back = Transaction.decode(data, max_size=1024)
    assert back == tx and back.hash == tx.hash == sha256(data)
    assert back.verify_signature()


def test_tx_replayed_on_other_chain_or_tampered_fails_signature() -> None:
    tx = Transaction.create(KEY, "fbci-test", 1, "test.echo", {"msg": b"x"})
    for changed in (
        Transaction("other-chain", tx.sender, 1, tx.kind, tx.payload, tx.signature),
        Transaction(tx.chain_id, tx.sender, 2, tx.kind, tx.payload, tx.signature),
        Transaction(tx.chain_id, tx.sender, 1, "acl.grant", tx.payload, tx.signature),
        Transaction(tx.chain_id, tx.sender, 1, tx.kind, {"msg": b"y"}, tx.signature),
    ):
        assert not changed.verify_signature()


@pytest.mark.parametrize(
    "fields, match",
    [
        (["c", bytes(32), 0, "test.echo", {}, bytes(64)], "nonce"),
        (["c", bytes(31), 1, "test.echo", {}, bytes(64)], "sender"),
        (["c", bytes(32), 1, "Echo", {}, bytes(64)], "kind"),
        (["c", bytes(32), 1, "test.echo", [], bytes(64)], "payload"),
        (["c", bytes(32), 1, "test.echo", {}, b""], "not signed"),
        (["c", bytes(32), True, "test.echo", {}, bytes(64)], "nonce"),
    ],
)
def test_tx_decode_names_the_bad_field(fields: list, match: str) -> None:
    from core import codec

    with pytest.raises(InvalidInput, match=match):
        Transaction.decode(codec.encode(fields), max_size=1024)


def test_tx_decode_enforces_size_and_shape() -> None:
    tx = Transaction.create(KEY, "fbci-test", 1, "test.echo", {"msg": b"x" * 100})
    with pytest.raises(TooLarge, match="limit"):
        Transaction.decode(tx.encode(), max_size=50)
    from core import codec

    with pytest.raises(DecodeError):
        Transaction.decode(codec.encode([1, 2, 3]), max_size=1024)


@given(st.lists(st.binary(max_size=8), max_size=20))
def test_merkle_root_commits_to_order_and_content(items: list[bytes]) -> None:
    root = merkle_root(items)
    if len(items) >= 2 and items[0] != items[1]:
        assert merkle_root([items[1], items[0], *items[2:]]) != root
    assert merkle_root(items + [b"extra"]) != root


def test_merkle_leaf_cannot_pose_as_inner_node() -> None:
    a, b = b"a", b"b"
    assert merkle_root([a, b]) != merkle_root([sha256(b"\x00" + a) + sha256(b"\x00" + b)])
    assert merkle_root([]) == EMPTY_ROOT


def test_block_roundtrip_and_root_check() -> None:
    txs = (b"t1", b"t2")
    header = BlockHeader("c", 1, ZERO_HASH, KEY.public_key.raw, 5, merkle_root(list(txs)), ZERO_HASH, ZERO_HASH, 2)
    block = Block(header, txs)
    assert Block.decode(block.encode(), max_size=10_000) == block
    bad = Block(header, (b"t1", b"t3"))
    with pytest.raises(InvalidInput, match="txs_root"):
        Block.decode(bad.encode(), max_size=10_000)
