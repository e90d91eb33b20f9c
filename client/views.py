"""Readable screens of the chain's typed read results: blocks, transactions, models, rounds, alerts.

Each function takes the result exactly as its one definition types it
(``core.api``, ``fl_contracts.queries``, ``ids.queries``) and returns text;
``--json`` prints the same result through ``core.wire.to_wire`` instead, so
the table and the JSON cannot disagree about what the chain said. ``names``
maps public keys to account or validator names, which the caller reads from
the chain (a key the chain does not name is shown as short hex).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.api import BlockInfo, CertificateInfo, TxInfo
from fl_contracts.contract import RoundRecord
from fl_contracts.queries import RegisteredModel
from ids.queries import AlertPage
from client.text import fields, short, table, utc

Names = Mapping[bytes, str]
SEVERITIES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
MAX_VALUE_CHARS = 72


def who(key: bytes, names: Names) -> str:
    return names.get(key) or short(key)


def _certificate(cert: CertificateInfo | None, names: Names, of: int) -> str:
    if cert is None:
        return "-"
    signers = ", ".join(who(s.validator, names) for s in cert.signatures)
    return f"view {cert.view}, {len(cert.signatures)}/{of} signatures ({signers})"


def block_view(block: BlockInfo, names: Names, validators: int) -> str:
    """``validators``: the size of the set, so a certificate reads "3/4 signatures"."""
    text = fields([
        ("height", block.height), ("hash", block.hash.hex()), ("time", utc(block.time_ms)),
        ("chain", block.chain_id), ("proposer", who(block.proposer, names)),
        ("previous block", block.prev_block_hash.hex()), ("transactions root", block.txs_root.hex()),
        ("state hash", block.state_hash.hex()), ("last commit", _certificate(block.last_commit, names, validators)),
        ("commit certificate", _certificate(block.commit_certificate, names, validators)
         if block.commit_certificate else "none on this validator yet"),
        ("transactions", block.num_txs),
    ])
    if block.txs:
        text += "\n" + "\n".join(f"  {i:>4}  {h.hex()}" for i, h in enumerate(block.txs))
    return text


def _value(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 32 else f"<{len(value)} bytes {value[:8].hex()}...>"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def tx_view(info: TxInfo, names: Names) -> str:
    r = info.receipt
    outcome = "executed" if r.ok else f"REJECTED error[{r.code} {r.reason}]: {r.message}"
    rows: list[tuple[str, object]] = [
        ("hash", info.hash.hex()), ("kind", info.kind), ("sender", f"{who(info.sender, names)} ({info.sender.hex()})"),
        ("nonce", info.nonce), ("block", f"height {r.height}, index {r.index}"), ("outcome", outcome),
        ("size", f"{len(info.tx)} bytes"),
    ]
    rows += [(f"payload.{k}", _value(v)) for k, v in info.transaction().payload.items()]
    rows += [(f"result.{k}", _value(v)) for k, v in r.result.items()]
    return fields(rows)


def models_view(models: Sequence[RegisteredModel], open_rounds: Mapping[str, RoundRecord]) -> str:
    """``open_rounds``: each model's open round (the last ``fl_rounds`` entry), for its version and round."""
    rows = []
    for m in models:
        s, rnd = m.spec, open_rounds.get(m.spec.id)
        rows.append((s.id, s.task.replace("_classification", ""), s.rule, s.num_params, s.round_length_blocks,
                     f"{s.min_updates}..{s.max_updates}", None if rnd is None else f"v{rnd.base_version}",
                     None if rnd is None else rnd.round, short(m.hash)))
    return table(("MODEL", "TASK", "RULE", "PARAMS", "ROUND BLOCKS", "UPDATES", "VERSION", "OPEN ROUND", "SPEC HASH"),
                 rows)


def rounds_view(rounds: Sequence[RoundRecord], names: Names) -> str:
    rows = []
    notes = []
    for r in rounds:
        version = f"v{r.base_version}" + (f" -> v{r.new_version}" if r.new_version is not None else "")
        closed = "-" if r.closed_height is None else r.closed_height
        # an open round counts the updates it holds so far; a failed one says how many in its reason
        updates = {"open": r.accepted, "aggregated": len(r.participants)}.get(r.status)
        accepted = r.accepted if r.status == "aggregated" else None
        rows.append((r.model_id, r.round, r.status, version, r.opened_height, r.deadline_height, closed, updates,
                     accepted, r.excluded, r.reason or ""))
        for p in r.participants:
            if p.excluded:
                notes.append(f"  {r.model_id} round {r.round}: {who(p.sender, names)} excluded: {p.excluded}")
    text = table(("MODEL", "ROUND", "STATUS", "VERSION", "OPENED", "DEADLINE", "CLOSED", "UPDATES", "ACCEPTED",
                  "EXCLUDED", "REASON"), rows)
    return text + ("\n" + "\n".join(notes) if notes else "")


def alerts_view(page: AlertPage) -> str:
    rows = [(a.alert_id, a.height, utc(a.block_time_ms), a.hospital, a.alert_class,
             SEVERITIES.get(a.severity, a.severity), f"{a.subject_kind}:{short(a.subject)}", a.count,
             f"{a.score_ppm / 1_000_000:.2f}", f"v{a.model_version}") for a in page.alerts]
    text = table(("ID", "HEIGHT", "TIME", "HOSPITAL", "CLASS", "SEVERITY", "SUBJECT", "COUNT", "SCORE", "MODEL"), rows)
    text += f"\n{len(page.alerts)} alert(s)"
    if page.next_cursor is not None:
        text += f"; more after these: add --cursor {page.next_cursor}"
    return text
