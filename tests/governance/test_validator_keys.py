"""A validator's own consensus-key rotation (``validator.rotate_key``): by a transaction signed with the old
key, or by the members when it is lost; one key swapped in the set from H + 2, the old key's votes refused
from then on, what it signed before still valid, and its account and key history moved with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus import CommitCertificate
from core.api import ACCOUNT, AccountGetParams, Receipt
from core.crypto import HybridPrivateKey, PrivateKey
from core.errors import InvalidInput, KeyRotated, ValidatorChangeInFlight, ValidatorKeyRefused
from core.keyhistory import KEY_HISTORY, KeyHistoryParams
from node.ledger import Ledger
from tests.governance.test_validator_set import (
    MEMBERS, NODES, add_params, certify, commit, decide, open_chain, propose, refused, tx,
)

OLD, NEW = NODES[3], PrivateKey(bytes([200]) * 32)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_chain(tmp_path / "chain", with_accounts=True)
    yield ledger
    ledger.app.database.close()


def rotation(new: PrivateKey = NEW, **extra: Any) -> dict[str, Any]:
    return {"new_public_key": new.public_key.raw, **extra}


def test_a_validator_rotates_its_own_key_from_two_blocks_after(chain: Ledger) -> None:
    app = chain.app
    (r,) = commit(chain, tx(chain, OLD, "validator.rotate_key", rotation()))
    assert r.ok, r.message
    decided = app.height
    assert r.result["effective_height"] == decided + 2 and r.result["rotated"] == "node3"
    old_set, new_set = app.validator_set(decided + 1), app.validator_set(decided + 2)
    assert old_set.keys[3] == OLD.public_key.raw and new_set.keys[3] == NEW.public_key.raw
    assert old_set.keys[:3] == new_set.keys[:3] and new_set.validators[3].name == "node3"
    assert new_set.validators[3].p2p_address == old_set.validators[3].p2p_address
    assert new_set.hash() != old_set.hash()  # validators_hash changes
    moved = app.query(ACCOUNT.path, AccountGetParams(public_key=NEW.public_key.raw))
    assert moved is not None and moved.roles == ("validator",) and moved.nonce == 1
    history = app.query(KEY_HISTORY.path, KeyHistoryParams(public_key=OLD.public_key.raw))
    assert [(c.old, c.new, c.height) for c in history] == [(OLD.public_key.raw, NEW.public_key.raw, decided)]
    with pytest.raises(KeyRotated):  # its transactions from the next block
        chain.mempool.add(tx(chain, OLD, "test.echo", {"msg": b"old"}))


def test_the_old_keys_votes_count_before_the_effective_height_and_never_after(chain: Ledger) -> None:
    app = chain.app
    commit(chain, tx(chain, OLD, "validator.rotate_key", rotation()))
    effective = app.height + 2
    last_old = propose(chain)  # effective - 1: the old key still decides, and its signature counts
    with_old = certify(last_old, [NODES[1], NODES[2], OLD])
    CommitCertificate.decode(with_old).verify("fbci-test", app.validator_set(last_old.height).keys, app.verifier)
    chain.blocks.commit(last_old, with_old)
    first_new = propose(chain)
    assert first_new.height == effective
    forged = CommitCertificate.decode(certify(first_new, [NODES[1], NODES[2], OLD]))
    with pytest.raises(InvalidInput, match=f"{OLD.public_key.raw.hex()[:16]} is not a validator"):
        forged.verify("fbci-test", app.validator_set(effective).keys, app.verifier)
    chain.blocks.commit(first_new, certify(first_new, [NODES[1], NODES[2], NEW]))
    assert app.height == effective


def test_the_members_rotate_a_lost_key(chain: Ledger) -> None:
    r = decide(chain, "validator.rotate_key", {"public_key": OLD.public_key.raw, **rotation()})
    assert isinstance(r, Receipt) and r.ok and r.result["executed"] == "validator.rotate_key"
    assert chain.app.validator_set(chain.app.height + 2).keys[3] == NEW.public_key.raw


def test_a_conviction_of_the_old_key_still_votes_out_its_validator(tmp_path: Path) -> None:
    five = open_chain(tmp_path / "five", validators=5, with_accounts=True)
    commit(five, tx(five, OLD, "validator.rotate_key", rotation()))
    commit(five)
    commit(five)
    r = decide(five, "validator.remove", {"public_keys": [OLD.public_key.raw]})
    assert isinstance(r, Receipt) and r.ok and r.result["outcome"]["removed"] == ["node3"]
    assert NEW.public_key.raw not in five.app.validator_set(five.app.height + 2)
    five.app.database.close()


@pytest.mark.parametrize(("sender", "payload", "error", "reason"), [
    (OLD, rotation(NODES[1]), ValidatorKeyRefused, "is already a validator"),
    (OLD, rotation(MEMBERS[0]), ValidatorKeyRefused, "registered account or a retired key"),
    (OLD, rotation(key_type="ed25519+ml-dsa-65"), InvalidInput, "required for a hybrid key"),
    (OLD, {"new_public_key": b"short"}, InvalidInput, "new_public_key"),
])
def test_a_refused_rotation_says_why_and_changes_nothing(chain: Ledger, sender: PrivateKey, payload: dict[str, Any],
                                                         error: type[Exception], reason: str) -> None:
    before = chain.app.info().state_hash
    with pytest.raises(error, match=reason):
        chain.mempool.add(tx(chain, sender, "validator.rotate_key", payload))
    assert chain.app.info().state_hash == before and len(chain.mempool) == 0


def test_only_a_current_validator_rotates_and_not_while_a_change_is_in_flight(chain: Ledger) -> None:
    r = decide(chain, "validator.rotate_key", {"public_key": NODES[5].public_key.raw, **rotation()})
    assert refused(r, ValidatorKeyRefused, "is not a validator now")
    r = decide(chain, "validator.add", add_params(4))
    assert isinstance(r, Receipt) and r.ok
    with pytest.raises(ValidatorChangeInFlight):
        chain.mempool.add(tx(chain, OLD, "validator.rotate_key", rotation()))


def test_a_validator_moves_from_ed25519_to_a_hybrid_key(chain: Ledger) -> None:
    """From the effective height its votes count only when both halves verify: its Ed25519 half alone, the
    old key type, no longer signs for it."""
    app = chain.app
    hybrid = HybridPrivateKey(bytes([202]) * 32, bytes([203]) * 32)
    (r,) = commit(chain, tx(chain, OLD, "validator.rotate_key", {
        "new_public_key": hybrid.public_key.raw, "key_type": "ed25519+ml-dsa-65",
        "ml_dsa_public_key": hybrid.public_key.ml_dsa}))
    assert r.ok, r.message
    commit(chain)
    block = propose(chain)
    keys = app.validator_set(block.height).keys
    assert app.validator_set(block.height).validators[3].key_type == "ed25519+ml-dsa-65"
    CommitCertificate.decode(certify(block, [NODES[1], NODES[2], hybrid])).verify("fbci-test", keys, app.verifier)
    with pytest.raises(InvalidInput, match="signature"):
        CommitCertificate.decode(certify(block, [NODES[1], NODES[2], hybrid.ed25519])).verify("fbci-test", keys,
                                                                                              app.verifier)
