"""The peer allow-list follows the chain's validator set (node/membership.py), on an in-process ledger."""

from __future__ import annotations

from pathlib import Path

from node.membership import PeerSet
from node.metrics import NodeMetrics
from node.transport import PeerInfo
from core.crypto import PrivateKey
from tests.governance.test_validator_set import NODES, add_params, certify, commit, decide, open_chain, propose, tx


def test_a_validator_is_admitted_when_decided_and_cut_after_its_last_height(tmp_path: Path) -> None:
    ledger = open_chain(tmp_path / "chain", validators=5)
    me = NODES[0].public_key.raw
    configured = [PeerInfo("node1", NODES[1].public_key.raw, "127.0.0.1:9999")]  # a proxy, say
    peers = PeerSet(ledger.app, me, configured)
    changes: list[list[PeerInfo]] = []
    peers.on_change = changes.append
    ledger.blocks.observers.append(peers.on_commit)
    joiner, leaver = NODES[5].public_key.raw, NODES[4].public_key.raw
    assert peers.key(joiner) is None and peers.key(me) is None and peers.key(leaver) is not None

    decide(ledger, "validator.add", add_params(5))
    assert peers.key(joiner) is not None  # let in at once: it must sync and be connected by its first height
    (admitted,) = changes
    by_key = {p.public_key: p for p in admitted}
    assert by_key[NODES[1].public_key.raw].address == "127.0.0.1:9999"  # the configured address wins
    assert by_key[joiner].address == "127.0.0.1:27005" and me not in by_key

    commit(ledger)
    commit(ledger)
    decide(ledger, "validator.remove", {"public_keys": [leaver]})
    removal = ledger.app.height + 2
    assert peers.key(leaver) is not None  # it still decides the next height
    commit(ledger)
    assert ledger.app.height == removal - 1 and peers.key(leaver) is None
    assert leaver not in {p.public_key for p in changes[-1]}
    ledger.app.database.close()


def test_metrics_count_missing_signatures_against_each_blocks_own_set(tmp_path: Path) -> None:
    """A removed validator is not reported missing from the certificates of heights it no longer decides."""
    ledger = open_chain(tmp_path / "chain", validators=5)
    metrics = NodeMetrics("node0", {v.public_key: v.name for v in ledger.app.validator_set(1).validators})
    ledger.blocks.observers.append(metrics.on_commit)

    def missing() -> float | None:
        return metrics.registry.get_sample_value("fbci_certificate_missing_validators", {"validator": "node0"})

    decide(ledger, "validator.remove", {"public_keys": [NODES[4].public_key.raw]})
    assert missing() == 0
    commit(ledger)
    commit(ledger)  # the first block of the four: certified by all four, the removed one not among them
    assert len(ledger.app.validator_set(ledger.app.height)) == 4 and missing() == 0
    ledger.app.database.close()


def test_metrics_name_a_validator_added_after_genesis(tmp_path: Path) -> None:
    """Names come from the chain's sets: a joiner missing from a certificate is reported by its own name."""
    ledger = open_chain(tmp_path / "chain")
    metrics = NodeMetrics("node0", {v.public_key: v.name for v in ledger.app.validator_set(1).validators})
    ledger.blocks.observers.append(metrics.on_commit)
    decide(ledger, "validator.add", add_params(4))
    commit(ledger)
    block = propose(ledger)
    assert NODES[4].public_key.raw in ledger.app.validator_set(block.height)
    ledger.blocks.commit(block, certify(block, NODES[:4]))  # a quorum of the five without the joiner
    sample = metrics.registry.get_sample_value("fbci_certificate_missing_signatures_total",
                                               {"validator": "node0", "missing": "node4"})
    assert sample == 1
    ledger.app.database.close()


def test_a_validator_rotating_its_key_never_dials_its_own_successor(tmp_path: Path) -> None:
    """The new key keeps the validator's name and address: the old-key process must not dial it (itself),
    while the others dial the new key at that address from the decision on."""
    ledger = open_chain(tmp_path / "chain", with_accounts=True)
    rotating, other = PeerSet(ledger.app, NODES[0].public_key.raw, []), PeerSet(ledger.app, NODES[1].public_key.raw, [])
    ledger.blocks.observers += [rotating.on_commit, other.on_commit]
    new = PrivateKey(bytes([201]) * 32).public_key.raw
    commit(ledger, tx(ledger, NODES[0], "validator.rotate_key", {"new_public_key": new}))
    for _ in range(3):  # past the effective height too
        assert all(p.name != "node0" for p in rotating.peers())
        assert new in {p.public_key for p in other.peers()}
        commit(ledger)
    assert NODES[0].public_key.raw not in {p.public_key for p in other.peers()}
    ledger.app.database.close()
