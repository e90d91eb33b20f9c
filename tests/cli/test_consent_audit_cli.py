"""``fbci consent`` / ``fbci audit`` before and after the chain: bad input, pseudonyms, and the gap a
validator that stopped anchoring leaves (validators faked at the session boundary)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest

import cli.main as cli
from cli import consent_audit
from client import audit as client_audit
from consent.record import pseudonym
from core.audit import AuditEvent, AuditPage


@pytest.mark.parametrize(("argv", "message"), [
    (["audit", "query", "--key", "k", "--patient", "zz"], "--patient: Value error, is not valid hex"),
    (["audit", "query", "--key", "k", "--limit", "9999"], "--limit: Input should be less than or equal to 500"),
    (["consent", "grant", "--key", "k", "--mrn", "MRN-1"], "--mrn needs --home"),
    (["consent", "revoke", "--key", "k", "--patient", "ab"], "--patient: a pseudonym is 64 hex digits"),
    (["audit", "verify", "--key", "k"], "pass --genesis FILE"),
])
def test_bad_input_is_a_clear_error_before_any_call(argv: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_pseudonym_is_the_hmac_under_the_homes_secret_which_stays_put(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["consent", "pseudonym", "--home", str(tmp_path), "--mrn", "MRN-0042"]) == 0
    printed = capsys.readouterr().out.strip()
    secret_file = tmp_path / "keys" / "pseudonym_secret.json"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    from client.fl.consent import load_or_create_secret

    assert printed == pseudonym("MRN-0042", load_or_create_secret(tmp_path / "keys")).hex()
    assert "MRN-0042" not in secret_file.read_text()
    cli.main(["consent", "pseudonym", "--home", str(tmp_path), "--mrn", "MRN-0042"])
    assert capsys.readouterr().out.strip() == printed  # the same secret: the same pseudonym


def _event(seq: int, observer: str) -> AuditEvent:
    return AuditEvent(seq=seq, recorded_ms=0, height=seq, observer=observer, action="R", outcome="0",
                      outcome_reason="ok", agent=None, agent_name="proxy-0", agent_roles=["patient_proxy"],
                      agent_address="127.0.0.1", entity_type="consent_history", entity={"patient": "ab" * 32},
                      purpose="PATADMIN")


def test_a_validator_that_stopped_anchoring_shows_as_a_gap(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pages = {
        "http://a": AuditPage(observer="node0", events=[_event(0, "node0")], next_seq=40, anchored_to=40,
                              last_anchor_height=120),
        "http://b": AuditPage(observer="node1", events=[_event(3, "node1")], next_seq=40, anchored_to=12,
                              last_anchor_height=31),
    }
    monkeypatch.setattr(consent_audit, "_session", lambda args, url=None: nullcontext(url))
    monkeypatch.setattr(client_audit, "query_events", lambda session, params: pages[session])
    assert cli.main(["audit", "query", "--rpc", "http://a", "--rpc", "http://b", "--key", "k"]) == 0
    out, err = capsys.readouterr()
    assert "node0: 1 event(s); 40 recorded, anchored below 40 (last anchor at height 120)\n" in err
    assert "node1: 1 event(s); 40 recorded, anchored below 12 (last anchor at height 31); GAP: 28 event(s) not anchored" in err
    assert "node0 #0" in out and "node1 #3" in out and "by proxy-0" in out
