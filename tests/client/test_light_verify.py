"""Proven answers from a real ledger, checked as a light client checks them, and each way of lying refused."""

from __future__ import annotations

import dataclasses

import pytest

from core.accounts import account_state
from core.api import ACCOUNT, AccountGetParams, AccountState, TxGetParams
from core.errors import AnswerMismatch, HeaderUnverified, NotFound, ProofIncomplete, ProofInvalid, StaleAnswer
from core.proofs import TX_RECEIPT, ProvenAnswer, StateProof, StateReceipt, receipt_of
from core.wire import from_wire, to_wire
from client.light import PROVABLE
from client.light_verify import GenesisValidators, HeaderVerifier, verify_answer
from tests.node.helpers import CHAIN, HOSPITAL, STRANGER, VALIDATORS, VKEYS, certify, echo_tx, open_ledger

HEADERS = HeaderVerifier(CHAIN, GenesisValidators(VKEYS))


@pytest.fixture
def chain(tmp_path):
    ledger = open_ledger(tmp_path / "db")
    for i in range(4):
        ledger.mempool.add(echo_tx(HOSPITAL, i + 1, msg=bytes([i])).encode())
        block = ledger.propose(VKEYS[0], 10_000 + i)
        ledger.blocks.commit(block, certify(block))
    return ledger


def _ask(chain, query, params) -> ProvenAnswer:
    """The answer as it crosses the wire: to JSON and back."""
    answer = chain.app.query(query.path, params, prove=True)
    return from_wire(ProvenAnswer, to_wire(answer))


def _check(answer: ProvenAnswer, query, params, **kw):
    return verify_answer(answer, query.path, PROVABLE[query.path], params, HEADERS, **kw)


def test_a_proven_account_is_the_state_the_newest_certified_header_commits(chain) -> None:
    params = AccountGetParams(public_key=HOSPITAL.public_key.raw)
    answer = _ask(chain, ACCOUNT, params)
    assert answer.state_height == chain.app.height - 1 == 3  # header 4 holds the root after block 3
    account = _check(answer, ACCOUNT, params)
    assert isinstance(account, AccountState) and account.nonce == 3
    assert account_state(chain.app.state, params).nonce == 4  # the newest state, not yet in any header


def test_an_unregistered_account_and_a_missing_receipt_are_proven_absent(chain) -> None:
    assert _check(_ask(chain, ACCOUNT, p := AccountGetParams(public_key=STRANGER.public_key.raw)), ACCOUNT, p) is None
    missing = TxGetParams(hash=bytes(32))
    assert _check(_ask(chain, TX_RECEIPT, missing), TX_RECEIPT, missing) is None


def test_a_receipt_is_proven_from_state(chain) -> None:
    params = TxGetParams(hash=echo_tx(HOSPITAL, 2, msg=b"\x01").hash)
    receipt = _check(_ask(chain, TX_RECEIPT, params), TX_RECEIPT, params)
    assert isinstance(receipt, StateReceipt) and receipt.ok and receipt.height == 2
    assert receipt == receipt_of(chain.app.state, params.hash)


def test_a_changed_value_or_a_fake_receipt_is_refused(chain) -> None:
    params = AccountGetParams(public_key=HOSPITAL.public_key.raw)
    answer = _ask(chain, ACCOUNT, params)
    lied = dataclasses.replace(answer, result={**answer.result, "nonce": 99})
    with pytest.raises(AnswerMismatch):
        _check(lied, ACCOUNT, params)
    missing = TxGetParams(hash=bytes(32))
    fake = _ask(chain, TX_RECEIPT, missing)
    fake = dataclasses.replace(fake, result=to_wire(StateReceipt(3, 0, True, 0, "", {})))
    with pytest.raises(AnswerMismatch):  # the proof shows no such receipt
        _check(fake, TX_RECEIPT, missing)
    with pytest.raises(AnswerMismatch):
        _check(dataclasses.replace(answer, result=None, not_found="no such account"), ACCOUNT, params)


def test_a_proof_of_something_else_or_with_a_hole_is_refused(chain) -> None:
    params = AccountGetParams(public_key=HOSPITAL.public_key.raw)
    answer = _ask(chain, ACCOUNT, params)
    other = _ask(chain, ACCOUNT, AccountGetParams(public_key=STRANGER.public_key.raw))
    with pytest.raises(ProofIncomplete):  # hashes to the root, but does not reach the account asked for
        _check(dataclasses.replace(other, result=answer.result), ACCOUNT, params)
    proof = StateProof.decode(answer.proof)
    with pytest.raises(ProofInvalid):
        _check(dataclasses.replace(answer, proof=StateProof(proof.root.left).encode()), ACCOUNT, params)


def test_a_header_without_a_quorum_or_from_another_height_is_refused(chain) -> None:
    params = AccountGetParams(public_key=HOSPITAL.public_key.raw)
    answer = _ask(chain, ACCOUNT, params)
    block = chain.app.head_block(chain.app.height)
    with pytest.raises(HeaderUnverified):
        _check(dataclasses.replace(answer, certificate=certify(block, VALIDATORS[:2])), ACCOUNT, params)
    with pytest.raises(ProofInvalid, match="header of height"):
        _check(dataclasses.replace(answer, state_height=answer.state_height - 1), ACCOUNT, params)
    with pytest.raises(HeaderUnverified):  # a real certificate, of another block
        _check(dataclasses.replace(answer, certificate=chain.app.blocks.certificate(2)), ACCOUNT, params)


def test_an_answer_older_than_the_trusted_height_is_stale(chain) -> None:
    params = AccountGetParams(public_key=HOSPITAL.public_key.raw)
    old = _ask(chain, ACCOUNT, params)
    for i in range(3):
        chain.mempool.add(echo_tx(HOSPITAL, 5 + i).encode())
        block = chain.propose(VKEYS[0], 20_000 + i)
        chain.blocks.commit(block, certify(block))
    with pytest.raises(StaleAnswer):
        _check(old, ACCOUNT, params, min_height=chain.app.height)
    assert _check(_ask(chain, ACCOUNT, params), ACCOUNT, params, min_height=chain.app.height).nonce == 6


def test_a_proven_not_found_is_reproduced_from_the_proof(chain) -> None:
    from fl_contracts.queries import FL_MODEL_GET, ModelGetParams

    params = ModelGetParams(model_id="no-such-model")
    answer = _ask(chain, FL_MODEL_GET, params)
    assert answer.not_found is not None
    with pytest.raises(NotFound, match="proven at height"):
        _check(answer, FL_MODEL_GET, params)


class InProcess:
    """An endpoint answering from an in-process ledger; ``lie`` rewrites its proven answers, and each
    proof request first commits one more block (the chain moving on while a client polls)."""

    def __init__(self, chain, name: str, lie=None) -> None:
        self.chain, self.rpc_url, self.lie = chain, f"http://{name}", lie

    async def prove(self, query, params) -> ProvenAnswer:
        block = self.chain.propose(VKEYS[0], 30_000 + self.chain.app.height)
        self.chain.blocks.commit(block, certify(block))
        answer = _ask(self.chain, query, params)
        return answer if self.lie is None else self.lie(answer)

    async def query(self, query, params):
        raise AssertionError("not used")


def test_the_light_client_falls_back_and_reads_its_writes(chain) -> None:
    import asyncio

    from client.light import LightClient
    from core.errors import NoVerifiedAnswer

    params = AccountGetParams(public_key=HOSPITAL.public_key.raw)
    liar = InProcess(chain, "liar", lambda a: dataclasses.replace(a, result={**a.result, "nonce": 0}))
    honest = InProcess(chain, "honest")
    alone = LightClient([liar], CHAIN, GenesisValidators(VKEYS))
    with pytest.raises(NoVerifiedAnswer) as caught:
        asyncio.run(alone.query(ACCOUNT, params))
    assert caught.value.code == -32136 and "answer_mismatch" in caught.value.data["failures"][0]
    both = LightClient([liar, honest], CHAIN, GenesisValidators(VKEYS))
    head = chain.app.height
    account = asyncio.run(both.query(ACCOUNT, params, min_state_height=head + 2))
    assert account.nonce == 4 and both.trusted_height >= head + 3  # polled until a header covered head + 2
