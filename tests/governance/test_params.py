"""Chain parameters by governance (``params.set``): state from genesis, decided by a quorum, in effect at
H + 2, judged by genesis's own schema rules, and read by every check of the height they govern."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.api import NoParams, Receipt
from core.block import Block
from core.crypto import PrivateKey
from core.errors import FbciError, InvalidInput, ParamNotGovernable, ParamValueRefused, TooLarge
from core.hashing import merkle_root
from core.state import MemoryState, TxContext
from core.tx import Transaction
from genesis.schema import ChainParams
from node import chain_params
from genesis.params_state import CHAIN_PARAMS, params_key
from node.chain_params import FIXED, GOVERNABLE, ParamsSchedule, init_params
from node.ledger import Ledger
from tests.governance.test_validator_set import MEMBERS, certify, commit, decide, open_chain, propose, signers_of, tx
from tests.node.helpers import CHAIN, PARAMS


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_chain(tmp_path / "chain")
    yield ledger
    ledger.app.database.close()


def echo(ledger: Ledger, size: int) -> bytes:
    """An echo transaction of member 3 of about ``size`` bytes."""
    return echo_of(ledger, MEMBERS[3], size)


def echo_of(ledger: Ledger, key: PrivateKey, size: int) -> bytes:
    return tx(ledger, key, "test.echo", {"msg": b"x" * (size - 200)})


def set_params(**changes: int) -> dict[str, Any]:
    return {"changes": changes}


def test_every_parameter_is_governable_or_says_why_not() -> None:
    assert GOVERNABLE | set(FIXED) == set(ChainParams.model_fields) and not GOVERNABLE & set(FIXED)


def test_genesis_writes_its_parameters_as_state(chain: Ledger) -> None:
    assert chain.app.state.get(params_key(1)) is not None
    assert chain.app.params_at(1) == PARAMS and chain.app.params_at(10**6) == PARAMS


def test_a_lowered_max_tx_bytes_counts_from_two_blocks_after_the_decision(chain: Ledger) -> None:
    app = chain.app
    (before,) = commit(chain, echo(chain, 3000))  # under the genesis limit of 4096
    assert before.ok
    r = decide(chain, "params.set", set_params(max_tx_bytes=2048))
    assert isinstance(r, Receipt) and r.ok, r
    decided = app.height
    assert r.result["outcome"] == {"effective_height": decided + 2, "params": {"max_tx_bytes": 2048}}
    assert app.params_at(decided + 1).max_tx_bytes == 4096 and app.params_at(decided + 2).max_tx_bytes == 2048
    (included,) = commit(chain, echo(chain, 3000))  # decided + 1: the old limit still holds
    assert included.ok
    big = echo(chain, 3000)
    with pytest.raises(TooLarge, match="limit is 2048"):
        chain.mempool.add(big)  # the mempool admits what the next height accepts
    oversized = _with_txs(chain, (big,))
    assert oversized.height == decided + 2
    with pytest.raises(InvalidInput, match="max_tx_bytes is 2048"):
        app.process_proposal(oversized, None)


def _with_txs(chain: Ledger, txs: tuple[bytes, ...]) -> Block:
    """The next block as a proposer that ignores the limits would build it (prepare_proposal keeps to them)."""
    block = propose(chain)
    return Block(replace(block.header, txs_root=merkle_root(list(txs)), num_txs=len(txs)), txs, block.last_commit)


def test_a_pending_transaction_above_the_new_limit_is_left_out_by_the_proposer(chain: Ledger) -> None:
    r = decide(chain, "params.set", set_params(max_tx_bytes=2048))
    assert isinstance(r, Receipt) and r.ok
    commit(chain)
    late = echo(chain, 3000)
    after = Transaction.create(MEMBERS[3], CHAIN, Transaction.decode(late, max_size=4096).nonce + 1, "test.echo",
                               {"msg": b"small"}).encode()
    chain.mempool.max_tx_bytes = 4096  # a mempool that admitted it while the limit was higher
    chain.mempool.add(late)
    chain.mempool.add(after)
    other = echo_of(chain, MEMBERS[1], 500)
    chain.mempool.add(other)
    block = propose(chain)
    assert block.txs == (other,)  # the sender's later nonce cannot go without it
    chain.app.process_proposal(block, None)


def test_execution_fails_a_transaction_above_its_heights_limit(chain: Ledger) -> None:
    r = decide(chain, "params.set", set_params(max_tx_bytes=2048))
    assert isinstance(r, Receipt) and r.ok
    commit(chain)
    big = echo(chain, 3000)
    block = _with_txs(chain, (big,))
    finalized = chain.blocks.commit(block, certify(block, signers_of(chain.app, block.height)))
    (receipt,) = finalized.receipts.values()
    assert not receipt.ok and receipt.code == TooLarge.code


@pytest.mark.parametrize(("changes", "error", "reason"), [
    ({"max_tx_bytes": 0}, ParamValueRefused, "greater than 0"),
    ({"max_tx_bytes": 8192}, ParamValueRefused, "above its genesis value 4096"),
    ({"max_block_bytes": 1000}, ParamValueRefused, "must be <= max_block_bytes (1000)"),
    ({"mempool_max_bytes": 3000}, ParamValueRefused, "must be <= mempool_max_bytes (3000)"),
    ({"tick_ms": 50}, ParamNotGovernable, "consensus timers"),
    ({"quota_window_blocks": 7}, ParamNotGovernable, "unrelated window"),
    ({"no_such": 1}, ParamNotGovernable, "no such chain parameter"),
])
def test_a_bad_change_is_refused_when_proposed_and_changes_nothing(chain: Ledger, changes: dict[str, int],
                                                                   error: type[FbciError], reason: str) -> None:
    app = chain.app
    before = app.info().state_hash
    with pytest.raises(error, match=re.escape(reason)):
        chain.mempool.add(tx(chain, MEMBERS[0], "gov.propose", {"action": "params.set", "params": {"changes": changes}}))
    assert len(chain.mempool) == 0 and app.info().state_hash == before


@pytest.mark.parametrize("params", [{"changes": {}}, {"changes": {"max_tx_bytes": "2048"}}, {"max_tx_bytes": 1}])
def test_a_malformed_payload_is_refused(chain: Ledger, params: dict[str, Any]) -> None:
    with pytest.raises((InvalidInput, ParamValueRefused)):
        chain.mempool.add(tx(chain, MEMBERS[0], "gov.propose", {"action": "params.set", "params": params}))


def test_a_cross_field_violation_is_judged_again_when_the_quorum_is_reached(chain: Ledger) -> None:
    """Each change is valid alone against the parameters it was proposed under; once one is in effect the
    other breaks member_block_bytes <= member_window_bytes, and its last approval is refused."""
    app = chain.app
    (a,) = commit(chain, tx(chain, MEMBERS[0], "gov.propose", {"action": "params.set",
                                                                "params": set_params(member_window_bytes=3 << 20)}))
    (b,) = commit(chain, tx(chain, MEMBERS[0], "gov.propose", {"action": "params.set",
                                                                "params": set_params(member_block_bytes=4 << 20)}))
    assert a.ok and b.ok
    for member in MEMBERS[1:3]:
        (r,) = commit(chain, tx(chain, member, "gov.approve", {"id": a.result["id"]}))
    assert r.ok and r.result["executed"] == "params.set"
    commit(chain, tx(chain, MEMBERS[1], "gov.approve", {"id": b.result["id"]}))
    with pytest.raises(ParamValueRefused, match="must be <= member_window_bytes"):
        commit(chain, tx(chain, MEMBERS[2], "gov.approve", {"id": b.result["id"]}))
    assert app.params_at(app.height + 2).member_block_bytes == PARAMS.member_block_bytes


def test_two_changes_decided_in_one_block_both_count(chain: Ledger) -> None:
    a = decide(chain, "params.set", set_params(max_block_txs=5))
    assert isinstance(a, Receipt) and a.ok
    b = decide(chain, "params.set", set_params(mempool_max_txs=50))
    assert isinstance(b, Receipt) and b.ok
    latest = chain.app.params_at(chain.app.height + 2)
    assert (latest.max_block_txs, latest.mempool_max_txs) == (5, 50)
    commit(chain)
    commit(chain)
    assert (chain.mempool.max_txs, chain.app.params_at(chain.app.height + 1).max_block_txs) == (50, 5)


def test_the_parameters_survive_a_restart(tmp_path: Path) -> None:
    ledger = open_chain(tmp_path / "chain")
    r = decide(ledger, "params.set", set_params(max_tx_bytes=2048, snapshot_interval=10))
    assert isinstance(r, Receipt) and r.ok
    commit(ledger)
    commit(ledger)
    height = ledger.app.height
    assert ledger.app.state.snapshot_interval == 10
    ledger.app.database.close()
    reopened = open_chain(tmp_path / "chain")
    assert reopened.app.params_at(height + 1).max_tx_bytes == 2048
    assert reopened.mempool.max_tx_bytes == 2048
    reopened.app.database.close()


def test_the_schedule_is_a_read_of_state(chain: Ledger) -> None:
    r = decide(chain, "params.set", set_params(max_block_txs=5))
    assert isinstance(r, Receipt) and r.ok
    answer = chain.app.query(CHAIN_PARAMS.path, NoParams())
    assert [(s.start, s.params.max_block_txs) for s in answer] == [(1, PARAMS.max_block_txs), (chain.app.height + 2, 5)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 5000)), max_size=8))
def test_each_height_runs_under_the_latest_decision_two_blocks_before_it(decisions: list[tuple[int, int]]) -> None:
    """Against a model (a decision in block H counts from H + 2; a later one of the same block wins): the
    schedule the application extends block by block and one read afresh from state agree with it."""
    state, followed = MemoryState(), ParamsSchedule(PARAMS)
    init_params(state, PARAMS)
    model = {1: PARAMS.max_block_txs}
    for height in sorted({h for h, _ in decisions}):
        for value in [v for h, v in decisions if h == height]:
            ctx = TxContext(CHAIN, height, 0, b"", frozenset(), b"", "")
            chain_params.set_params(state, ctx, {"changes": {"max_block_txs": value}})
            model[height + 2] = value
        followed.after_block(state, height)
    fresh = ParamsSchedule(PARAMS)
    for h in range(0, 45):
        expected = model[max(start for start in model if start <= max(h, 1))]
        assert followed.at(state, h).max_block_txs == fresh.at(state, h).max_block_txs == expected
