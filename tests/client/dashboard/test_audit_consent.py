"""The Audit page's trail with its proofs, and the Models page's consent status, on the in-memory chain.

The trail is node0's real audit log and ``audit.anchor`` contract, read and
proven by ``client/audit.py`` (what ``fbci audit verify`` runs); consent is the
real ``consent.*`` contract and ``consent_provenance``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from core import codec
from core.crypto import PrivateKey
from core.tx import Transaction
from consent.contract import ChainConsent
from consent.record import training_purpose
from client.dashboard.server import Dashboard, build_app
from client.dashboard.ward import GeneratedFeed
from client.light_verify import ChainValidators, HeaderVerifier
from node.audit import _EVENT
from tests.client.dashboard.memory_source import CHAIN_ID, MemorySource
from tests.client.dashboard.test_server import _json, run


class AuditedChain:
    """A memory chain with an auditor, a hospital and a clinician, and node0's audit trail on disk."""

    def __init__(self, tmp: Path) -> None:
        self.source = MemorySource(tmp / "audit")
        self.auditor = self.source.add_account("auditor0", {"auditor"})
        self.hospital = self.source.add_account("hospital0", {"hospital"})
        self.clinician = self.source.add_account("clinician0", {"clinician"})

    def send(self, key: PrivateKey, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        nonce = self.source.nonces.get(key.public_key.raw, 0) + 1
        receipt = self.source.commit([Transaction.create(key, CHAIN_ID, nonce, kind, payload)])[0]
        assert receipt.ok, receipt.message
        return receipt.result

    def clinician_reads_consent(self) -> None:
        """A private read the trail records: a clinician asks which rounds used withdrawn patients."""
        self.source.guard("consent_provenance", frozenset({"clinician"}), self.clinician, {"model_id": "deterioration"})


@asynccontextmanager
async def dashboard(chain: AuditedChain, reader: PrivateKey | None, *,
                    trusted: bool = True) -> AsyncIterator[TestClient]:
    chain.source.reader = reader
    headers = HeaderVerifier(CHAIN_ID, ChainValidators(chain.source.validator_set)) if trusted else None
    d = Dashboard(chain.source, [chain.source], GeneratedFeed(3, 0, step_s=3600), reader, None, history=50,
                  trusted=headers)
    async with TestClient(TestServer(build_app(d))) as client:
        yield client


def _events(audit: dict[str, Any], entity_type: str) -> list[dict[str, Any]]:
    return [e for e in audit["events"] if e["entity_type"] == entity_type]


def test_audit_page_shows_reads_with_their_proofs_and_an_edited_event_fails(tmp_path: Path) -> None:
    chain = AuditedChain(tmp_path)
    chain.clinician_reads_consent()
    chain.clinician_reads_consent()
    chain.source.anchor_trail()

    async def go() -> None:
        async with dashboard(chain, chain.auditor) as client:
            audit = await _json(client, "/api/audit")
            [trail] = audit["trail"]
            assert trail["status"] == "ok" and trail["observer"] == "node0" and trail["anchored_to"] == 2
            reads = _events(audit, "consent_provenance")
            assert [r["seq"] for r in reads] == [1, 0]  # newest first
            for read in reads:  # the second under an anchor whose block is already proven: its own path only
                assert (read["agent"], read["action"], read["outcome"]) == ("clinician0", "R", "0")
                assert read["entity"] == "model_id=deterioration"
                assert read["proof"] == "verified" and read["proof_detail"] == "anchored at height 1"
            # the dashboard's own reads (recorded, as every private read is) are counted, neither shown nor proven
            assert _events(audit, "audit_events") == [] and {e["agent"] for e in audit["events"]} == {"clinician0"}
            assert "of the newest 4, 2 are this dashboard's own reads (not shown)" in trail["message"]  # its 2 queries
            assert any(t["kind"] == "audit.anchor" for t in audit["rows"])  # the changes, beside the trail

            # the validator edits the stored read: its leaf changes, so its proof is checked again and fails
            assert chain.source.audit is not None
            stored = chain.source.audit.event(0)
            assert stored is not None
            edited = stored.model_copy(update={"agent_name": "someone-else"})
            chain.source.audit._db.put(_EVENT + (0).to_bytes(8, "big"), codec.encode(edited.model_dump()))
            [read] = [e for e in _events(await _json(client, "/api/audit"), "consent_provenance") if e["seq"] == 0]
            assert read["agent"] == "someone-else" and read["proof"] == "failed"
            assert "no longer rebuild the anchored root" in read["proof_detail"]
    run(go)


def test_audit_page_says_plainly_when_its_key_may_not_read_the_trail(tmp_path: Path) -> None:
    chain = AuditedChain(tmp_path)
    chain.clinician_reads_consent()

    async def go() -> None:
        for reader, why in ((chain.hospital, "read by the roles ['auditor']"), (None, "sign the request")):
            async with dashboard(chain, reader) as client:
                audit = await _json(client, "/api/audit")  # a page, not an error
                [trail] = audit["trail"]
                assert trail["status"] == "refused" and audit["events"] == []
                assert "this dashboard's key may not read the audit trail" in trail["message"]
                assert why in trail["message"]
    run(go)


def test_without_a_genesis_file_proofs_are_labelled_unchecked(tmp_path: Path) -> None:
    chain = AuditedChain(tmp_path)
    chain.clinician_reads_consent()
    chain.source.anchor_trail()

    async def go() -> None:
        async with dashboard(chain, chain.auditor, trusted=False) as client:
            [read] = _events(await _json(client, "/api/audit"), "consent_provenance")
            assert read["proof"] == "unchecked" and "no genesis file" in read["proof_detail"]
    run(go)


def test_models_page_shows_rounds_that_used_patients_who_later_withdrew(tmp_path: Path) -> None:
    chain = AuditedChain(tmp_path)
    patient, purpose = secrets.token_bytes(32), training_purpose("deterioration")
    chain.send(chain.hospital, "consent.set", {"patient": patient, "decision": "permit", "purpose": purpose})
    # what the FL contract records when it accepts round 3's update trained on this patient
    ChainConsent().record_use(chain.source.state, chain.hospital.public_key.raw, [patient], "deterioration", 3, 2,
                              len(chain.source.blocks))

    async def models(client: TestClient) -> dict[str, Any]:
        found = (await _json(client, "/api/models"))["models"]
        return next(m for m in found if m["id"] == "deterioration")

    async def go() -> None:
        async with dashboard(chain, chain.hospital) as client:
            before = await models(client)
            assert before["withdrawn"] == [] and "no round of this model used" in before["consent_note"]
            chain.send(chain.hospital, "consent.revoke", {"patient": patient, "purpose": purpose})
            after = await models(client)
            [tainted] = after["withdrawn"]
            assert (tainted["round"], tainted["base_version"], tainted["revoked_patients"]) == (3, 2, 1)
            assert tainted["first_withdrawn_height"] == len(chain.source.blocks)
            assert "1 round(s) used patients who later withdrew" in after["consent_note"]
        async with dashboard(chain, None) as client:
            refused = await models(client)
            assert refused["withdrawn"] == [] and "may not read consent_provenance" in refused["consent_note"]
    run(go)


def test_a_transaction_the_key_may_not_read_shows_as_private_and_the_index_goes_on(tmp_path: Path) -> None:
    chain = AuditedChain(tmp_path)
    other = chain.source.add_account("hospital1", {"hospital"})
    patient, purpose = secrets.token_bytes(32), training_purpose("deterioration")
    chain.send(chain.hospital, "consent.set", {"patient": patient, "decision": "permit", "purpose": purpose})

    async def go() -> None:
        for reader, shown in ((other, "(private)"), (chain.auditor, "consent.set")):
            async with dashboard(chain, reader) as client:
                [row] = (await _json(client, "/api/audit"))["rows"]
                assert row["kind"] == shown and row["height"] == 1
    run(go)
