"""What a validator turns into alerts about its own clients and peers."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import BadNonce, BadSignature, ContractRejected
from ids.alerts import SEVERITY_CRITICAL, AlertPayload
from ids.selfdefence import DEFAULT_THRESHOLDS, address_subject
from core.api import Receipt
from fl_contracts.contract import Participant, RoundRecord
from node.application import FinalizedBlock
from node.misbehaviour import SelfDefence
from node.rpc.node_api import MISBEHAVIOUR_RPC_FLOOD
from tests.node.helpers import HOSPITAL, echo_tx, make_block

CLIENT = HOSPITAL.public_key.raw


def defence() -> tuple[SelfDefence, list[AlertPayload]]:
    raised: list[AlertPayload] = []
    return SelfDefence("Node0", raised.append, clock_ms=lambda: 1_000_000), raised


def test_a_flood_raises_one_alert_per_window_naming_the_hashed_address() -> None:
    d, raised = defence()
    for _ in range(DEFAULT_THRESHOLDS["request_flood"] * 3):
        d.on_rpc_misbehaviour(MISBEHAVIOUR_RPC_FLOOD, "127.0.0.9")
    assert len(raised) == 1
    alert = raised[0]
    assert (alert.alert_class, alert.subject_kind, alert.hospital) == ("request_flood", "address", "node0")
    assert alert.subject == address_subject("127.0.0.9") and b"127.0.0.9" not in alert.subject


def test_replays_are_counted_per_client_key_and_bad_signatures_never_against_the_key_they_name() -> None:
    d, raised = defence()
    for _ in range(DEFAULT_THRESHOLDS["replayed_tx"] - 1):
        d.on_tx_rejected(CLIENT, BadNonce("used"))
    assert raised == []
    d.on_tx_rejected(CLIENT, BadNonce("used"))
    for _ in range(DEFAULT_THRESHOLDS["bad_signature"]):
        d.on_tx_rejected(CLIENT, BadSignature("no"))  # proves nothing about CLIENT: anyone can write its key
    assert [(a.alert_class, a.subject) for a in raised] == [("replayed_tx", CLIENT)]


def test_fl_updates_outside_the_bounds_are_alerted_whether_refused_at_admission_or_in_a_block() -> None:
    d, raised = defence()
    d.on_tx_rejected(CLIENT, ContractRejected("a coordinate is too big", data={"fl_reason": "out_of_bounds"}))
    d.on_tx_rejected(CLIENT, ContractRejected("late", data={"fl_reason": "wrong_round"}))  # not a bounds problem
    tx = echo_tx(HOSPITAL, 1)
    refused = Receipt(1, 0, False, -32016, "contract_rejected", "too big", {"fl_reason": "out_of_bounds"})
    d.inspect_commit(FinalizedBlock(make_block(1, [tx.encode()]), b"", {tx.hash: refused}, {CLIENT: 1}))
    assert [(a.alert_class, a.subject) for a in raised] == [("rejected_fl_update", CLIENT)]


def test_an_update_a_robust_rule_excluded_counts_too() -> None:
    d, raised = defence()
    participants = [Participant(sender=CLIENT, num_samples=10, weight=1, norm_clipped=False,
                                excluded="not_selected_by_multi_krum"),
                    Participant(sender=b"\x05" * 32, num_samples=10, weight=1, norm_clipped=False)]
    record = RoundRecord(model_id="m", round=1, base_version=0, opened_height=0, deadline_height=5, closed_height=1,
                         status="aggregated", participants=participants, accepted=1, excluded=1)
    for height in (1, 2):
        d.inspect_commit(FinalizedBlock(make_block(height, []), b"", {}, {}, rounds_closed=[record]))
    assert [(a.alert_class, a.subject) for a in raised] == [("rejected_fl_update", CLIENT)]


@dataclass(frozen=True)
class FakeEvidence:
    validator: bytes
    height: int

    def encode(self) -> bytes:
        return b"two conflicting prepares"


def test_equivocation_is_alerted_at_once_as_critical() -> None:
    d, raised = defence()
    d.on_evidence(FakeEvidence(b"\x09" * 32, 7))  # type: ignore[arg-type]
    assert len(raised) == 1 and raised[0].severity == SEVERITY_CRITICAL
    assert (raised[0].alert_class, raised[0].subject_kind, raised[0].subject) == ("equivocation", "validator", b"\x09" * 32)
