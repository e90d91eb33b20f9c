"""Executing blocks: permissions, nonces, failed transactions change nothing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import AlreadyKnown, BadNonce, BadSignature, MempoolFull, TooLarge, Unauthorized, UnknownKind, WrongChain
from core.tx import Transaction
from node.accounts import load_account
from node.execution import Executor, SignatureCache
from node.application import FinalizedBlock
from node.stores import Database
from node.state_store import StateStore
from tests.node.helpers import (
    ADMIN, CHAIN, GATEWAY, HOSPITAL, STRANGER, echo_tx, make_block, make_registry, open_ledger, seed_accounts,
)


@pytest.fixture
def chain(tmp_path):
    db = Database(tmp_path / "db")
    state = StateStore(db)
    seed_accounts(state)
    executor = Executor(CHAIN, make_registry(), SignatureCache(), max_tx_bytes=4096)
    yield state, executor
    db.close()


def run_block(state, executor, height, txs):
    outcome = executor.execute_block(make_block(height, [t.encode() for t in txs]), state)
    state.commit(height, outcome.pending)
    return [outcome.receipts[t.hash] for t in txs]


def test_nonces_must_be_sequential_and_stop_replays(chain) -> None:
    state, executor = chain
    t1, t2 = echo_tx(HOSPITAL, 1), echo_tx(HOSPITAL, 2)
    r = run_block(state, executor, 1, [t1, t2])
    assert [x.ok for x in r] == [True, True]
    replay = run_block(state, executor, 2, [t1])
    assert not replay[0].ok and replay[0].reason == "bad_nonce"
    gap = run_block(state, executor, 3, [echo_tx(HOSPITAL, 5)])
    assert gap[0].reason == "bad_nonce"
    assert load_account(state, HOSPITAL.public_key.raw).nonce == 2


def test_unregistered_wrong_role_and_wrong_chain_are_rejected_without_state_change(chain) -> None:
    state, executor = chain
    before = state.state_hash
    reg = Transaction.create(HOSPITAL, CHAIN, 1, "acl.register",
                             {"public_key": STRANGER.public_key.raw, "name": "x", "roles": ["hospital"]})
    receipts = run_block(state, executor, 1, [echo_tx(STRANGER, 1), reg, echo_tx(ADMIN, 1, chain="other")])
    assert [x.reason for x in receipts] == ["unauthorized", "unauthorized", "wrong_chain"]
    assert load_account(state, STRANGER.public_key.raw) is None
    assert load_account(state, HOSPITAL.public_key.raw).nonce == 0  # never reached its handler
    assert state.state_hash == before  # the root commits to the state alone: nothing was written, so it stands
    assert list(state.scan(b"acct/")) and len(list(state.scan(b"acct/"))) == 3


def test_admin_registers_grants_and_revokes(chain) -> None:
    state, executor = chain
    pk = STRANGER.public_key.raw
    txs = [
        Transaction.create(ADMIN, CHAIN, 1, "acl.register", {"public_key": pk, "name": "new", "roles": ["hospital"]}),
        Transaction.create(ADMIN, CHAIN, 2, "acl.grant", {"public_key": pk, "role": "gateway"}),
        Transaction.create(ADMIN, CHAIN, 3, "acl.revoke", {"public_key": pk, "role": "hospital"}),
        Transaction.create(ADMIN, CHAIN, 4, "acl.register", {"public_key": pk, "name": "dup", "roles": ["hospital"]}),
        Transaction.create(ADMIN, CHAIN, 5, "acl.grant", {"public_key": pk, "role": "emperor"}),
        Transaction.create(ADMIN, CHAIN, 6, "acl.revoke", {"public_key": ADMIN.public_key.raw, "role": "admin"}),
    ]
    receipts = run_block(state, executor, 1, txs)
    assert [r.ok for r in receipts] == [True, True, True, False, False, False]
    assert receipts[3].reason == "contract_rejected" and "already registered" in receipts[3].message
    acct = load_account(state, pk)
    assert acct.roles == {"gateway"} and acct.name == "new"
    assert load_account(state, ADMIN.public_key.raw).nonce == 6  # failed contract calls still spend the nonce
    assert run_block(state, executor, 2, [echo_tx(STRANGER, 1)])[0].ok


def test_bad_payload_is_rejected_with_the_field_named(chain) -> None:
    state, executor = chain
    tx = Transaction.create(ADMIN, CHAIN, 1, "acl.grant", {"public_key": b"short", "role": "hospital"})
    (r,) = run_block(state, executor, 1, [tx])
    assert not r.ok and r.reason == "invalid_input" and "public_key" in r.message


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(6))))
def test_same_block_gives_same_state_hash_on_every_replica(tmp_path_factory, order) -> None:
    """Determinism: two replicas executing the same block reach the same hash."""
    txs = [echo_tx(HOSPITAL, i + 1, msg=bytes([i])) for i in range(3)] + \
          [echo_tx(GATEWAY, i + 1, msg=bytes([i])) for i in range(3)]
    block_txs = [txs[i] for i in order]
    hashes = []
    for _ in range(2):
        db = Database(tmp_path_factory.mktemp("db"))
        state = StateStore(db)
        seed_accounts(state)
        run_block(state, Executor(CHAIN, make_registry(), SignatureCache(), 4096), 1, block_txs)
        hashes.append(state.state_hash)
        db.close()
    assert hashes[0] == hashes[1]


@pytest.fixture
def ledger(tmp_path):
    ledger = open_ledger(tmp_path / "ledger", max_tx_bytes=1024, mempool_max_txs=5, mempool_max_bytes=10_000)
    yield ledger
    ledger.app.database.close()


@pytest.fixture
def mempool(ledger):
    return ledger.mempool


def idle_block(height: int) -> FinalizedBlock:
    """What the mempool hears of a committed block that carried none of its transactions."""
    return FinalizedBlock(make_block(height, []), b"", {}, {})


def test_mempool_admission_errors(mempool) -> None:
    t = echo_tx(HOSPITAL, 1)
    mempool.add(t.encode())
    with pytest.raises(AlreadyKnown):
        mempool.add(t.encode())
    with pytest.raises(BadNonce):
        mempool.add(echo_tx(HOSPITAL, 1, msg=b"other").encode())
    with pytest.raises(BadNonce):
        mempool.add(echo_tx(HOSPITAL, 500).encode())
    with pytest.raises(Unauthorized):
        mempool.add(echo_tx(STRANGER, 1).encode())
    with pytest.raises(WrongChain):
        mempool.add(echo_tx(GATEWAY, 1, chain="other").encode())
    forged = Transaction(CHAIN, GATEWAY.public_key.raw, 1, "test.echo", {"msg": b"x"}, t.signature)
    with pytest.raises(BadSignature):
        mempool.add(forged.encode())
    with pytest.raises(UnknownKind):
        mempool.add(Transaction.create(GATEWAY, CHAIN, 1, "nope.nope", {}).encode())
    with pytest.raises(TooLarge):
        mempool.add(echo_tx(GATEWAY, 1, msg=b"x" * 2000).encode())
    assert len(mempool) == 1


def test_mempool_bound_gives_clear_error(mempool) -> None:
    for key, nonces in ((HOSPITAL, (1, 2, 3)), (GATEWAY, (1,)), (ADMIN, (1,))):  # no sender past its fair share
        for n in nonces:
            mempool.add(echo_tx(key, n).encode())
    with pytest.raises(MempoolFull, match="full"):
        mempool.add(echo_tx(GATEWAY, 2).encode())


def test_reap_keeps_nonces_contiguous_and_eviction_after_commit(ledger, mempool) -> None:
    h3, h1, g1, h2 = echo_tx(HOSPITAL, 3), echo_tx(HOSPITAL, 1), echo_tx(GATEWAY, 1), echo_tx(HOSPITAL, 2)
    for t in (h3, h1, g1):
        mempool.add(t.encode())
    assert mempool.reap(10, 10_000) == [h1.encode(), g1.encode()]  # h3 waits for h2
    mempool.add(h2.encode())
    assert mempool.reap(10, 10_000) == [h1.encode(), g1.encode(), h2.encode(), h3.encode()]
    assert mempool.reap(2, 10_000) == [h1.encode(), g1.encode()]
    other_h1 = echo_tx(HOSPITAL, 1, msg=b"committed elsewhere")
    ledger.blocks.commit(make_block(1, [other_h1.encode(), g1.encode()]), b"")  # the mempool hears of it
    assert h1.hash not in mempool and g1.hash not in mempool
    assert mempool.reap(10, 10_000) == [h2.encode(), h3.encode()]


def test_a_transaction_stuck_behind_a_lost_nonce_expires_after_its_ttl(mempool) -> None:
    mempool.ttl_blocks = 3
    stuck = echo_tx(HOSPITAL, 2)  # nonce 1 never arrives
    mempool.add(stuck.encode())
    assert mempool.reap(10, 10_000) == []
    mempool.update(idle_block(2))
    assert stuck.hash in mempool
    mempool.update(idle_block(3))
    assert stuck.hash not in mempool and len(mempool) == 0 and mempool.size_bytes == 0


def test_a_raising_end_block_hook_is_contained_recorded_and_the_chain_keeps_committing(tmp_path) -> None:
    """An end-block hook's bug would raise on every validator at the same height: its writes are dropped,
    the failure is recorded in state alike everywhere, and the block (and the next) commit."""
    from node.execution import hook_failure, hook_name

    def broken(state, height, block_hash):
        state.set(b"broken/partial", b"x")  # a write made before the bug: must not survive
        raise ZeroDivisionError("division by zero")

    def sound(state, height, block_hash):
        state.set(b"sound/" + height.to_bytes(8, "big"), b"ran")
        return []

    roots = []
    for name in ("a", "b"):  # two validators executing the same blocks
        db = Database(tmp_path / name)
        state = StateStore(db)
        seed_accounts(state)
        registry = make_registry()
        registry.end_block_hooks += [broken, sound]
        executor = Executor(CHAIN, registry, SignatureCache(), max_tx_bytes=4096)
        assert run_block(state, executor, 1, [echo_tx(HOSPITAL, 1)])[0].ok
        assert run_block(state, executor, 2, [echo_tx(HOSPITAL, 2)])[0].ok
        assert state.get(b"broken/partial") is None
        assert state.get(b"sound/" + (2).to_bytes(8, "big")) == b"ran"  # the other hooks still ran
        failure = hook_failure(state, hook_name(broken))
        assert failure is not None and (failure.height, failure.failures) == (2, 2)
        assert failure.reason == "ZeroDivisionError" and failure.hook.endswith("broken")
        roots.append(state.state_hash)
        db.close()
    assert roots[0] == roots[1]


def test_memory_exhaustion_in_a_hook_is_this_machines_and_not_recorded_on_chain(chain) -> None:
    state, executor = chain

    def starved(state, height, block_hash):
        raise MemoryError

    executor.registry.end_block_hooks.append(starved)
    with pytest.raises(MemoryError):
        executor.execute_block(make_block(1, [echo_tx(HOSPITAL, 1).encode()]), state)
