"""Consent, authenticated reads and the audit trail on a real 4-validator testnet, over JSON-RPC.

Genesis requires consent for ``bc_consent`` (a breast-cancer FedAvg model of two
hospitals), declares a read policy (so models, rounds, alerts, consent and audit
are private) and anchors audit events every 2 blocks. The story is the README's
worked example: a patient's proxy grants, two hospitals train, the proxy revokes,
the round open at the revocation still counts the patient, the next round leaves
them out (a stale update that still lists them is refused with the reason), the
rounds that used them are marked; unauthenticated, wrong-role and revoked-key
reads are refused and audited; the auditor proves each audit event against an
anchor in a certified block.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cli.main as cli
from client import consent as consent_client
from client.audit import anchor_trust, fetch_proof, query_events, verify_event
from client.fl.consent import load_or_create_secret, pseudonyms, record_numbers
from client.fl.data import breast_cancer_split
from client.fl.train import TrainResult, train_rounds
from client.session import ChainSession, load_client_key
from consent.queries import CONSENT_HISTORY, HistoryParams
from core.audit import AuditEventsParams
from core.crypto import PrivateKey
from core.errors import ContractRejected, ReadAuthRequired, ReadForbidden, RevokedReader, Unauthorized
from devnet.catalog import default_app_state
from fl_contracts.spec import ModelSpec
from genesis.home import HomePaths
from genesis.schema import load_genesis

MODEL = "bc_consent"
ROWS = 12


def app_state() -> dict:
    state = default_app_state(4)
    spec = ModelSpec.for_sequential(MODEL, [30, 2], rule="fedavg", min_updates=2, max_updates=2,
                                    round_length_blocks=20, max_abs=8.0, max_norm=16.0)
    state["models"].append(spec.to_doc())
    return {**state, "consent": {"required_for": [MODEL]}, "read_policy": {}, "audit": {"anchor_every_blocks": 2}}


def wait_for(probe, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)  # polling a remote chain for a condition, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


def test_consent_reads_and_audit_over_json_rpc(testnet, capsys: pytest.CaptureFixture[str]) -> None:
    net = testnet(4, app_state=app_state())
    net.wait_ready(60, min_height=1)
    url = [s.rpc_url for s in net.specs]
    homes = [Path(s.home) for s in net.specs]
    hospital = [load_client_key("hospital", homes[i]) for i in range(2)]
    admin = load_client_key("admin", homes[0])
    auditor, proxy, leaver = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    split = breast_cancer_split(4, alpha=0.5, seed=0)
    data = [(split.hospitals[i][0][:ROWS], split.hospitals[i][1][:ROWS]) for i in range(2)]
    rows = [pseudonyms(record_numbers("breast_cancer", i, ROWS), load_or_create_secret(HomePaths(homes[i]).keys_dir))
            for i in range(2)]
    patient = rows[0][0]

    with ChainSession(url[0], admin) as s:
        for key, name in ((auditor, "auditor0"), (leaver, "auditor1")):
            s.submit_commit("acl.register", {"public_key": key.public_key.raw, "name": name, "roles": ["auditor"]})
    with ChainSession(url[0], hospital[0]) as s:
        consent_client.issue_proxy(s, proxy, "proxy-p0", patient)
        for p in rows[0][1:]:
            consent_client.grant(s, p, f"train:{MODEL}")
    with ChainSession(url[0], proxy) as s:
        granted = consent_client.grant(s, patient, f"train:{MODEL}").receipt.height
    with ChainSession(url[1], hospital[1]) as s:
        for p in rows[1]:
            granted = max(granted, consent_client.grant(s, p, f"train:{MODEL}").receipt.height)

    def open_round(i: int = 0):
        with ChainSession(url[i], hospital[0]) as s:
            return s.rounds(MODEL)[-1]

    wait_for(lambda: open_round().opened_height >= granted, "a round whose snapshot sees the grants", 150)

    def train_round() -> list[TrainResult]:
        results: dict[int, TrainResult] = {}
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                results[i] = train_rounds(url[i], hospital[i], MODEL, *data[i], 1, seed=i, patients=rows[i],
                                          round_timeout_s=90.0)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert not errors, errors
        return [results[0], results[1]]

    def weights(result: TrainResult) -> dict[bytes, int]:
        return {p.sender: p.weight for p in result.records[-1].participants}

    first = train_round()
    me = hospital[0].public_key.raw
    assert first[0].records[-1].status == "aggregated" and weights(first[0])[me] == ROWS

    with ChainSession(url[0], proxy) as s:
        revoked_at = consent_client.revoke(s, patient, f"train:{MODEL}").receipt.height
    if open_round().opened_height < revoked_at:  # the round open at the revocation still counts the patient
        assert weights(train_round()[0])[me] == ROWS
    head = wait_for(lambda: (r := open_round()).opened_height >= revoked_at and r, "the round after the revocation",
                    150)
    stale = {"model_id": MODEL, "round": head.round, "base_version": head.base_version, "num_samples": ROWS,
             "delta": np.zeros(62, dtype="<i4").tobytes(), "patients": sorted(rows[0])}
    with ChainSession(url[0], hospital[0]) as s, pytest.raises(ContractRejected, match="revoked for train:bc_consent"):
        s.submit_commit("fl.submit_update", stale)
    after = train_round()
    assert weights(after[0])[me] == ROWS - 1 and weights(after[0])[hospital[1].public_key.raw] == ROWS

    with ChainSession(url[2], proxy) as s:  # any validator serves it; the proxy signs
        history = consent_client.history(s, patient)
        assert [e.action for e in history.events] == ["set", "revoke"]
        assert first[0].records[-1].round in {u.round for u in history.uses}
        assert head.round not in {u.round for u in history.uses}  # the round after the revocation left them out
        with pytest.raises(ReadForbidden):
            s.model_version(MODEL)  # a proxy does not read models
    with ChainSession(url[2], hospital[0]) as s:
        tainted = consent_client.provenance(s, MODEL)
    assert {t.round for t in tainted} == {u.round for u in history.uses} and all(t.revoked_patients == 1 for t in tainted)

    with ChainSession(url[3], proxy) as s, pytest.raises(Unauthorized, match="needs one of the roles"):
        s.submit("fl.submit_update", stale)  # a patient proxy does not train: refused, and audited
    with ChainSession(url[3]) as anonymous, pytest.raises(ReadAuthRequired):
        anonymous.run(lambda c: c.query(CONSENT_HISTORY, HistoryParams(patient=patient)))
    with ChainSession(url[3], admin) as s:
        s.submit_commit("acl.revoke", {"public_key": leaver.public_key.raw, "role": "auditor"})
    with ChainSession(url[3], leaver) as s, pytest.raises(RevokedReader):
        query_events(s, AuditEventsParams())

    with ChainSession(url[3], auditor) as s:
        page = wait_for(lambda: (p := query_events(s, AuditEventsParams(limit=500))).anchored_to >= 3 and p,
                        "node3's first anchors")
        refusals = {e.outcome_reason for e in page.events if e.outcome == "4"}
        assert {"auth_required", "revoked_key", "unauthorized"} <= refusals
        headers = anchor_trust(load_genesis(HomePaths(homes[0]).genesis))
        checked = [verify_event(s, fetch_proof(s, e.seq), e.seq, headers) for e in page.events
                   if e.seq < page.anchored_to]
    assert checked and all(v.ok for v in checked), [v for v in checked if not v.ok]
    with ChainSession(url[2], auditor) as s:
        patient_reads = query_events(s, AuditEventsParams(patient=patient)).events
    assert any(e.agent == proxy.public_key.raw and e.outcome == "0" for e in patient_reads)

    auditor_file = homes[0].parent / "auditor.json"
    auditor.save(auditor_file)
    net_dir = str(homes[0].parent)
    assert cli.main(["audit", "verify", "--net", net_dir, "--key", str(auditor_file)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and " ok " in out and "anchored event(s) proven" in out
    proxy_file = homes[0].parent / "proxy.json"
    proxy.save(proxy_file)
    assert cli.main(["consent", "history", "--rpc", url[1], "--key", str(proxy_file), "--patient", patient.hex()]) == 0
    out = capsys.readouterr().out
    assert f"revoke train:{MODEL}" in out and f"used by {MODEL} round {first[0].records[-1].round}" in out
    assert cli.main(["audit", "query", "--net", net_dir, "--key", str(auditor_file), "--patient", patient.hex()]) == 0
    captured = capsys.readouterr()
    assert "consent_history" in captured.out and "proxy-p0" in captured.out and "anchored below" in captured.err

