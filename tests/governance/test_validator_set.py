"""Validator-set changes through the in-process ledger: decided in block H by a quorum of the members, in
effect at H + 2, refused with a reason when unsafe, and every check of a height held to that height's set
(headers, LastCommit, proposer, evidence, block sync)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consensus import CommitCertificate, Ed25519Signer, Evidence, Prepare
from consensus.certificates import KIND_COMMIT, vote_sign_bytes
from consensus.messages import SignedMessage
from core.api import ACCOUNT, AccountGetParams, Receipt
from core.block import Block
from core.crypto import PrivateKey
from core.errors import FbciError, InvalidInput, ValidatorChangeInFlight, ValidatorChangeRefused
from core.hashing import sha256
from core.state import TxContext
from core.tx import Transaction
from core.validators import Validator, ValidatorSet
from governance.config import GovernanceConfig
from governance.contract import init_governance
from node.app import LedgerApplication
from node.evidence_tx import evidence_handler
from node.kinds import build_registry
from node.ledger import Ledger
from node.stores import Database
from node.sync import BlockSyncer
from node.validator_set import init_validator_set
from tests.node.helpers import CHAIN, GENESIS_TIME_MS, PARAMS

MEMBERS = [PrivateKey(bytes([60 + i]) * 32) for i in range(4)]
NODES = [PrivateKey(bytes([90 + i]) * 32) for i in range(8)]
ACCOUNTS = [(m.public_key.raw, f"admin{i}", ["admin"]) for i, m in enumerate(MEMBERS)]


def entry(i: int) -> Validator:
    return Validator(NODES[i].public_key.raw, f"node{i}", f"127.0.0.1:{27000 + i}")


def genesis_set(validators: int = 4) -> ValidatorSet:
    return ValidatorSet(tuple(entry(i) for i in range(validators)))


def open_chain(path: Path, validators: int = 4, *, with_accounts: bool = False, **params: Any) -> Ledger:
    """``with_accounts``: each genesis validator also holds an account with role validator, as genesis files
    give them (so it can send its own transactions)."""
    genesis = genesis_set(validators)
    chain_params = PARAMS.model_copy(update=params) if params else PARAMS
    app = LedgerApplication(CHAIN, genesis.keys, chain_params, Database(path), build_registry(CHAIN, genesis.keys),
                            genesis_time_ms=GENESIS_TIME_MS)
    config = GovernanceConfig(members=tuple(sorted(m.public_key.raw for m in MEMBERS)), required=3)
    own = [(v.public_key, v.name, ["validator"]) for v in genesis.validators] if with_accounts else []
    app.init_genesis([*ACCOUNTS, *own], [lambda state: init_governance(state, config),
                                lambda state: init_validator_set(state, genesis)])
    return Ledger.assemble(app, chain_params)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_chain(tmp_path / "chain")
    yield ledger
    ledger.app.database.close()


def signers_of(app: LedgerApplication, height: int) -> list[PrivateKey]:
    keys = app.validator_set(height).keys
    return [k for k in NODES if k.public_key.raw in keys]


def certify(block: Block, signers: list[PrivateKey]) -> bytes:
    body = vote_sign_bytes(CHAIN, block.height, 0, block.hash)
    sigs = tuple((k.public_key.raw, Ed25519Signer(k, CHAIN).sign(KIND_COMMIT, body)) for k in signers)
    return CommitCertificate(block.height, 0, block.hash, sigs).encode()


def propose(ledger: Ledger, *raws: bytes) -> Block:
    for raw in raws:
        ledger.mempool.add(raw)
    app = ledger.app
    proposer = app.validator_set(app.height + 1).keys[0]
    return ledger.propose(proposer, app.info().last_block_time_ms + 1000)


def commit(ledger: Ledger, *raws: bytes) -> list[Any]:
    """Propose, check and commit the next block, certified by every validator of its height."""
    block = propose(ledger, *raws)
    ledger.app.process_proposal(Block.decode(block.encode(), max_size=1 << 20), None)
    finalized = ledger.blocks.commit(block, certify(block, signers_of(ledger.app, block.height)))
    return [finalized.receipts[sha256(raw)] for raw in block.txs]


def tx(ledger: Ledger, key: PrivateKey, kind: str, payload: dict[str, Any]) -> bytes:
    state = ledger.app.query(ACCOUNT.path, AccountGetParams(public_key=key.public_key.raw))
    return Transaction.create(key, CHAIN, (state.nonce if state else 0) + 1, kind, payload).encode()


def decide(ledger: Ledger, action: str, params: dict[str, Any]) -> Receipt | FbciError:
    """Three of the four members decide ``action``: the receipt of the approval that executed it, or the
    refusal of that approval (admission runs the action, so a refused one never reaches a block)."""
    (r,) = commit(ledger, tx(ledger, MEMBERS[0], "gov.propose", {"action": action, "params": params}))
    assert r.ok, r.message
    commit(ledger, tx(ledger, MEMBERS[1], "gov.approve", {"id": r.result["id"]}))
    try:
        (r,) = commit(ledger, tx(ledger, MEMBERS[2], "gov.approve", {"id": r.result["id"]}))
    except FbciError as exc:
        return exc
    return r


def refused(r: Receipt | FbciError, error: type[FbciError], reason: str) -> bool:
    return isinstance(r, FbciError) and r.code == error.code and reason in r.message


def add_params(i: int) -> dict[str, Any]:
    v = entry(i)
    return {"public_key": v.public_key, "name": v.name, "p2p_address": v.p2p_address}


def test_an_added_validator_decides_from_two_blocks_after_the_decision(chain: Ledger) -> None:
    app = chain.app
    old = app.validator_set(1)
    r = decide(chain, "validator.add", add_params(4))
    decided = app.height
    assert isinstance(r, Receipt) and r.ok and r.result["executed"] == "validator.add"
    assert app.validators_at(decided + 1) == old.keys
    assert app.validators_at(decided + 2) == (*old.keys, NODES[4].public_key.raw)
    assert app.validators_at(decided + 3) is None  # not decided yet: consensus must not guess it
    new = app.validator_set(decided + 2)
    next_block = propose(chain)  # height decided + 1: still the old set, announcing the new one
    assert (next_block.header.validators_hash, next_block.header.next_validators_hash) == (old.hash(), new.hash())
    account = app.query(ACCOUNT.path, AccountGetParams(public_key=NODES[4].public_key.raw))
    assert account is not None and account.roles == ("validator",)


def test_the_block_that_decides_hands_the_update_to_the_node(chain: Ledger) -> None:
    commit(chain, tx(chain, MEMBERS[0], "gov.propose", {"action": "validator.add", "params": add_params(4)}))
    commit(chain, tx(chain, MEMBERS[1], "gov.approve", {"id": 1}))
    block = propose(chain, tx(chain, MEMBERS[2], "gov.approve", {"id": 1}))
    finalized = chain.blocks.commit(block, certify(block, signers_of(chain.app, block.height)))
    assert finalized.validator_update is not None
    assert finalized.validator_update.height == block.height + 2
    assert finalized.validator_update.validators.keys[-1] == NODES[4].public_key.raw
    empty = propose(chain)
    assert chain.blocks.commit(empty, certify(empty, NODES[:4])).validator_update is None


def test_each_height_is_checked_against_its_own_set(chain: Ledger) -> None:
    app = chain.app
    decide(chain, "validator.add", add_params(4))
    effective = app.height + 2
    commit(chain)  # effective - 1
    block = propose(chain)  # the first block of the five
    old_quorum = certify(block, NODES[:3])  # 3 of the old 4: a quorum then, not of the new 5 (it needs 4)
    chain.blocks.commit(block, certify(block, NODES[:5]))
    assert block.height == effective and block.header.validators_hash == app.validator_set(effective).hash()
    nxt = propose(chain)
    forged = Block(replace(nxt.header, prev_commit_hash=sha256(old_quorum)), nxt.txs, old_quorum)
    with pytest.raises(InvalidInput, match="3 signatures, 4 needed"):
        app.process_proposal(forged, None)
    wrong_set = Block(replace(nxt.header, validators_hash=app.validator_set(1).hash()), nxt.txs, nxt.last_commit)
    with pytest.raises(InvalidInput, match="validators_hash"):
        app.process_proposal(wrong_set, None)


def test_a_proposer_outside_its_heights_set_is_refused(chain: Ledger) -> None:
    block = chain.propose(NODES[5].public_key.raw, chain.app.info().last_block_time_ms + 1000)
    with pytest.raises(InvalidInput, match="proposer is not a validator at height 1"):
        chain.app.process_proposal(block, None)


def test_a_node_syncing_from_genesis_verifies_every_certificate_across_the_change(tmp_path: Path) -> None:
    source = open_chain(tmp_path / "source")
    decide(source, "validator.add", add_params(4))
    for _ in range(3):
        commit(source)
    items = [[source.app.stored_block(h).raw, source.app.stored_block(h).certificate]
             for h in range(1, source.app.height + 1)]
    fresh = open_chain(tmp_path / "fresh")
    synced: list[int] = []
    syncer = BlockSyncer(fresh, chain_id=CHAIN, verifier=fresh.app.verifier, send=lambda p, d: True,
                         peers=lambda: [], on_synced=lambda h, c: synced.append(h), on_misbehaviour=lambda p, w: None)
    effective = source.app.height - 1  # decided three commits (one decision block + 2) before the last two
    forged = list(items)  # the first block of the new set, certified by three of the old four only
    block = Block.decode(items[effective - 1][0], max_size=1 << 20)
    forged[effective - 1] = [items[effective - 1][0], certify(block, NODES[:3])]
    with pytest.raises(InvalidInput, match=f"height {effective}: 3 signatures, 4 needed"):
        syncer.apply_batch(["blocks", forged])
    assert fresh.app.height == effective - 1
    assert syncer.apply_batch(["blocks", items]) == 2
    assert fresh.app.info() == source.app.info()
    assert fresh.app.validator_set(effective) == source.app.validator_set(effective)


def test_refused_changes_say_why_and_change_nothing(tmp_path: Path) -> None:
    ledger = open_chain(tmp_path / "seven", validators=7)  # f = 2
    app = ledger.app
    refusals = [
        ("validator.add", {**add_params(7), "public_key": NODES[1].public_key.raw}, ValidatorChangeRefused,
         "already a validator"),
        ("validator.remove", {"public_keys": [NODES[i].public_key.raw for i in range(3)]}, ValidatorChangeRefused,
         "removes 3 of 7 validators at once; at most f = 2"),
        ("validator.remove", {"public_keys": [NODES[7].public_key.raw]}, ValidatorChangeRefused, "not validators now"),
    ]
    for action, params, error, reason in refusals:
        r = decide(ledger, action, params)
        assert refused(r, error, reason), (action, r)
    assert app.validator_set(app.height + 2) == app.validator_set(1)
    r = decide(ledger, "validator.remove", {"public_keys": [NODES[5].public_key.raw, NODES[6].public_key.raw]})
    assert isinstance(r, Receipt) and r.ok and r.result["executed"] == "validator.remove"
    account = app.query(ACCOUNT.path, AccountGetParams(public_key=NODES[5].public_key.raw))
    assert account is None or "validator" not in account.roles
    commit(ledger)
    commit(ledger)
    assert len(app.validator_set(app.height)) == 5
    r = decide(ledger, "validator.remove", {"public_keys": [NODES[4].public_key.raw]})
    assert isinstance(r, Receipt) and r.ok  # five to four
    for _ in range(2):
        commit(ledger)
    r = decide(ledger, "validator.remove", {"public_keys": [NODES[3].public_key.raw]})
    assert refused(r, ValidatorChangeRefused, "would leave 3 validators")
    ledger.app.database.close()


def test_only_one_change_is_in_flight(chain: Ledger) -> None:
    commit(chain, tx(chain, MEMBERS[0], "gov.propose", {"action": "validator.add", "params": add_params(4)}))
    commit(chain, tx(chain, MEMBERS[0], "gov.propose", {"action": "validator.add", "params": add_params(5)}))
    commit(chain, tx(chain, MEMBERS[1], "gov.approve", {"id": 1}), tx(chain, MEMBERS[2], "gov.approve", {"id": 2}))
    (first,) = commit(chain, tx(chain, MEMBERS[2], "gov.approve", {"id": 1}))
    assert first.ok
    with pytest.raises(ValidatorChangeInFlight, match=f"takes effect at height {chain.app.height + 2}"):
        commit(chain, tx(chain, MEMBERS[1], "gov.approve", {"id": 2}))
    commit(chain)
    commit(chain)  # the first change is in effect now; the second proposal is still open
    (again,) = commit(chain, tx(chain, MEMBERS[3], "gov.approve", {"id": 2}))
    assert again.ok and again.result["executed"] == "validator.add"


def test_a_malformed_validator_is_refused_when_proposed(chain: Ledger) -> None:
    bad = {**add_params(4), "p2p_address": "nowhere"}
    with pytest.raises(InvalidInput, match="p2p_address"):
        chain.mempool.add(tx(chain, MEMBERS[0], "gov.propose", {"action": "validator.add", "params": bad}))


def _prepare(key: PrivateKey, height: int, block_hash: bytes) -> SignedMessage:
    unsigned = Prepare(height, 0, block_hash, key.public_key.raw, b"")
    return Prepare(height, 0, block_hash, key.public_key.raw,
                   Ed25519Signer(key, CHAIN).sign(unsigned.kind, unsigned.sign_bytes(CHAIN)))


def test_evidence_is_judged_by_the_set_of_its_own_height(chain: Ledger) -> None:
    decide(chain, "validator.add", add_params(4))
    effective = chain.app.height + 2
    state = chain.app.state.begin()
    handler = evidence_handler(CHAIN, ())
    ctx = TxContext(CHAIN, effective, 0, NODES[0].public_key.raw, frozenset({"validator"}), b"\0" * 32, "node0")
    joiner = NODES[4]
    before = Evidence(_prepare(joiner, effective - 1, b"\x01" * 32), _prepare(joiner, effective - 1, b"\x02" * 32))
    with pytest.raises(InvalidInput, match="not a validator"):
        handler(state, ctx, {"evidence": before.encode()})
    after = Evidence(_prepare(joiner, effective, b"\x01" * 32), _prepare(joiner, effective, b"\x02" * 32))
    assert handler(state, ctx, {"evidence": after.encode()})["validator"] == joiner.public_key.raw
