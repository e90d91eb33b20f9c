"""The ledger application: block building, the rules a proposal must keep, crash replay, CheckTx,
and block sync that trusts no peer."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from consensus import Ed25519Verifier
from core.api import TX_GET, TxGetParams, TxInfo
from core.block import Block
from core.crypto import PrivateKey
from core.errors import InvalidInput, PeerMisbehaved
from node.ledger import Ledger
from node.sync import BlockSyncer, serve_request
from tests.node.helpers import (
    ADMIN, CHAIN, HOSPITAL, VALIDATORS, VKEYS, account, certify, echo_tx, open_ledger,
)


def new_chain(tmp_path, name: str) -> Ledger:
    return open_ledger(tmp_path / name)


def grow(chain: Ledger, blocks: int, now_ms: int = 10_000) -> list[Block]:
    made = []
    for i in range(blocks):
        chain.mempool.add(echo_tx(HOSPITAL, chain.app.info().height + 1, msg=bytes([i])).encode())
        block = chain.propose(VKEYS[0], now_ms + i)
        chain.blocks.commit(block, certify(block))
        made.append(block)
    return made


def check(chain: Ledger, block: Block, now_ms: int) -> None:
    """What a validator does with a proposal: decode its bytes, then ask the application."""
    chain.app.process_proposal(Block.decode(block.encode(), max_size=1 << 20), now_ms)


def test_built_blocks_pass_the_rules_and_chain_their_hashes(tmp_path) -> None:
    chain = new_chain(tmp_path, "a")
    b1, b2 = grow(chain, 2)
    assert b2.header.prev_block_hash == b1.hash and b1.header.time_ms > 1000
    assert account(chain, HOSPITAL.public_key.raw).nonce == 2
    committed = chain.app.query(TX_GET.path, TxGetParams(hash=echo_tx(HOSPITAL, 2, msg=b"\x01").hash))
    assert isinstance(committed, TxInfo) and committed.receipt.ok and committed.receipt.height == 2


@pytest.mark.parametrize("field, value, rule", [
    ("chain_id", "other", "chain"),
    ("height", 5, "height"),
    ("prev_block_hash", b"\x01" * 32, "prev_block_hash"),
    ("prev_commit_hash", b"\x01" * 32, "prev_commit_hash"),
    ("prev_commit_hash", bytes(32), "prev_commit_hash"),
    ("state_hash", b"\x01" * 32, "state_hash"),
    ("proposer", b"\x02" * 32, "proposer"),
    ("time_ms", 500, "time_ms"),          # before genesis time
    ("time_ms", 10**12, "future"),        # beyond the clock drift bound
])
def test_a_proposal_breaking_a_rule_is_refused_naming_it(tmp_path, field, value, rule) -> None:
    chain = new_chain(tmp_path, "a")
    grow(chain, 1)
    good = chain.propose(VKEYS[1], 20_000)
    check(chain, good, 20_000)
    bad = Block(dataclasses.replace(good.header, **{field: value}), good.txs, good.last_commit)
    with pytest.raises(InvalidInput, match=rule):
        check(chain, bad, 20_000)


def _carrying(block: Block, last_commit: bytes) -> Block:
    from core.hashing import sha256

    return Block(dataclasses.replace(block.header, prev_commit_hash=sha256(last_commit)), block.txs, last_commit)


@pytest.mark.parametrize("forgery", ["too_few_signatures", "outsider", "other_block", "not_a_certificate"])
def test_a_proposal_carrying_a_forged_last_commit_is_refused(tmp_path, forgery) -> None:
    chain = new_chain(tmp_path, "a")
    b1, b2 = grow(chain, 2)
    good = chain.propose(VKEYS[1], 20_000)
    forged = {
        "too_few_signatures": certify(b2, VALIDATORS[:2]),
        "outsider": certify(b2, VALIDATORS[:2] + [PrivateKey(bytes([99]) * 32)]),
        "other_block": certify(b1),
        "not_a_certificate": b"\x93\x01\x02\x03",
    }[forgery]
    with pytest.raises(InvalidInput):
        check(chain, _carrying(good, forged), 20_000)


def test_any_valid_quorum_for_the_last_block_is_accepted(tmp_path) -> None:
    """Validators finish a height with different 2f+1 subsets; the proposer's subset must do for all."""
    chain = new_chain(tmp_path, "a")
    _, b2 = grow(chain, 2)
    good = chain.propose(VKEYS[1], 20_000)
    other_subset = certify(b2, VALIDATORS[1:])
    assert other_subset != good.last_commit
    check(chain, _carrying(good, other_subset), 20_000)


def test_a_proposal_with_a_forged_transaction_is_refused(tmp_path) -> None:
    chain = new_chain(tmp_path, "a")
    tx = echo_tx(HOSPITAL, 1)
    forged = dataclasses.replace(tx, signature=bytes(64)).encode()
    block = chain.propose(VKEYS[0], 5000)
    from core.hashing import merkle_root

    bad = Block(dataclasses.replace(block.header, num_txs=1, txs_root=merkle_root([forged])), (forged,),
                block.last_commit)
    with pytest.raises(InvalidInput, match="signature"):
        check(chain, bad, 5000)


def test_replay_applies_a_stored_block_whose_state_commit_was_cut_off(tmp_path) -> None:
    chain = new_chain(tmp_path, "a")
    grow(chain, 1)
    block = chain.propose(VKEYS[0], 30_000)
    chain.app.blocks.save(block.height, block.hash, block.encode(), certify(block))  # crash before execution
    assert chain.app.state.height == 1 and chain.app.blocks.last_height == 2
    assert chain.app.replay_unapplied() == 1
    assert chain.app.state.height == 2


def _syncer(chain: Ledger, sent: list, misbehaving: list) -> BlockSyncer:
    return BlockSyncer(chain, chain_id=CHAIN, verifier=Ed25519Verifier(CHAIN),
                       send=lambda peer, data: sent.append(data) or True, peers=lambda: [VKEYS[1]],
                       on_synced=lambda h, c: None, on_misbehaviour=lambda peer, what: misbehaving.append(what))


def test_sync_applies_certified_blocks_from_a_peers_store(tmp_path) -> None:
    source, fresh = new_chain(tmp_path, "src"), new_chain(tmp_path, "dst")
    grow(source, 5)
    from core import codec

    reply = codec.decode(serve_request(source.app, ["get_blocks", 1, 64]))
    syncer = _syncer(fresh, [], [])
    assert syncer.apply_batch(reply) == 5
    assert fresh.app.info() == source.app.info() and fresh.app.info().height == 5


@pytest.mark.parametrize("tamper", ["too_few_signatures", "outsider_signature", "wrong_block", "unlinked"])
def test_sync_trusts_no_peer(tmp_path, tamper) -> None:
    source, fresh = new_chain(tmp_path, "src"), new_chain(tmp_path, "dst")
    blocks = grow(source, 2)
    outsider = PrivateKey(bytes([99]) * 32)
    items = [[b.encode(), source.app.stored_block(b.height).certificate] for b in blocks]
    if tamper == "too_few_signatures":
        items[0][1] = certify(blocks[0], VALIDATORS[:2])
    elif tamper == "outsider_signature":
        items[0][1] = certify(blocks[0], VALIDATORS[:2] + [outsider])
    elif tamper == "wrong_block":
        items[0][1] = items[1][1]
    else:  # a correctly certified block 2 offered without block 1
        items = items[1:]
    syncer = _syncer(fresh, [], [])
    with pytest.raises((InvalidInput, PeerMisbehaved)):
        syncer.apply_batch(["blocks", items])
    assert fresh.app.info().height == 0


def test_sync_rotates_to_another_peer_after_a_bad_batch(tmp_path) -> None:
    """End to end through the async loop: a lying peer is reported, an honest one is used."""
    source, fresh = new_chain(tmp_path, "src"), new_chain(tmp_path, "dst")
    blocks = grow(source, 3)
    from core import codec

    misbehaving: list[str] = []

    async def run() -> None:
        liar, honest = VKEYS[1], VKEYS[2]
        syncer: BlockSyncer

        def send(peer: bytes, data: bytes) -> bool:
            request = codec.decode(data)
            if peer == liar:
                forged = [[blocks[0].encode(), certify(blocks[0], VALIDATORS[:1])]]
                syncer.on_response(peer, ["blocks", forged])
            else:
                syncer.on_response(peer, codec.decode(serve_request(source.app, request)))
            return True

        syncer = BlockSyncer(fresh, chain_id=CHAIN, verifier=Ed25519Verifier(CHAIN), send=send,
                             peers=lambda: [liar, honest], on_synced=lambda h, c: None,
                             on_misbehaviour=lambda p, what: misbehaving.append(what))
        syncer.request_sync(3, liar)
        await asyncio.wait_for(syncer.join(), 10)

    asyncio.run(run())
    assert fresh.app.info().height == 3 and misbehaving == ["bad_sync_batch"]


def test_check_tx_refuses_what_the_contract_would_refuse_at_the_door(tmp_path) -> None:
    from core.errors import ContractRejected
    from core.tx import Transaction

    chain = new_chain(tmp_path, "a")
    malformed = Transaction.create(ADMIN, CHAIN, 1, "acl.grant", {"public_key": b"short", "role": "hospital"})
    with pytest.raises(InvalidInput, match="public_key"):
        chain.mempool.add(malformed.encode())
    again = Transaction.create(ADMIN, CHAIN, 1, "acl.register",
                               {"public_key": HOSPITAL.public_key.raw, "name": "dup", "roles": ["hospital"]})
    with pytest.raises(ContractRejected, match="already registered"):
        chain.mempool.add(again.encode())
    assert len(chain.mempool) == 0


def test_check_tx_lets_a_sequence_through_whose_later_steps_need_the_earlier(tmp_path) -> None:
    from core.tx import Transaction

    chain = new_chain(tmp_path, "a")
    newcomer = PrivateKey(bytes([77]) * 32).public_key.raw
    register = Transaction.create(ADMIN, CHAIN, 1, "acl.register",
                                  {"public_key": newcomer, "name": "new", "roles": ["hospital"]})
    grant = Transaction.create(ADMIN, CHAIN, 2, "acl.grant", {"public_key": newcomer, "role": "gateway"})
    chain.mempool.add(register.encode())
    chain.mempool.add(grant.encode())  # not registered yet in committed state, but pending before it
    block = chain.propose(VKEYS[0], 5000)
    committed = chain.blocks.commit(block, certify(block))
    assert all(r.ok for r in committed.receipts.values())
    assert set(account(chain, newcomer).roles) == {"hospital", "gateway"}


def test_a_batch_refused_midway_keeps_the_verified_blocks_durably(tmp_path) -> None:
    from core import codec

    source, fresh = new_chain(tmp_path, "src"), new_chain(tmp_path, "dst")
    blocks = grow(source, 3)
    items = codec.decode(serve_request(source.app, ["get_blocks", 1, 64]))[1]
    items[2][1] = certify(blocks[2], VALIDATORS[:1])  # the third certificate lacks a quorum
    synced: list[int] = []
    syncer = BlockSyncer(fresh, chain_id=CHAIN, verifier=Ed25519Verifier(CHAIN),
                         send=lambda p, d: True, peers=lambda: [], on_synced=lambda h, c: synced.append(h),
                         on_misbehaviour=lambda p, w: None)
    with pytest.raises(InvalidInput):
        syncer.apply_batch(["blocks", items])
    assert synced == [1, 2] and fresh.app.info().height == 2
    fresh.app.database.close()
    reopened = open_ledger(tmp_path / "dst")
    assert reopened.app.info().height == 2 and reopened.app.state.height == 2


def test_a_restarted_node_ages_its_mempool_from_the_chain_height(tmp_path) -> None:
    chain = new_chain(tmp_path, "a")
    grow(chain, 2)
    chain.app.database.close()
    reopened = open_ledger(tmp_path / "a")
    reopened.mempool.ttl_blocks = 2  # admitted at height 2, so it may still wait at height 3
    waiting = echo_tx(HOSPITAL, 4)  # nonce 3 not yet here: stays pending
    reopened.mempool.add(waiting.encode())
    block = reopened.propose(VKEYS[0], 50_000)
    reopened.blocks.commit(block, certify(block))
    assert waiting.hash in reopened.mempool
