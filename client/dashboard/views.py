"""What each page shows, as plain data the browser renders: alerts, models, network, audit.

Each function reads the chain through a :class:`~client.dashboard.source.ChainSource`
and the block index, and returns dataclasses (sent as JSON); nothing is
cached here that the chain could contradict, except immutable model versions.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from core.errors import FbciError, InvalidInput, ReadRefused
from consent.contract import TaintedRound
from ids.alerts import ALERT_CLASSES, StoredAlert
from ids.deterioration import DeteriorationModel
from client.dashboard.chain import Ack, BlockRow, ChainIndex, TxRow
from client.dashboard.source import ChainSource
from client.dashboard.trail import RECENT_EVENTS, EventRow, TrailReader, ValidatorTrail
from client.dashboard.ward import PatientObs, evaluate_on_ward

T = TypeVar("T")
MAX_ALERTS = 2000
DETERIORATION = "deterioration"


# --- alerts ---------------------------------------------------------------------------------------

def _parsed(query: Any, name: str, parse: Callable[[str], T]) -> T | None:
    text = query.get(name)
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        raise InvalidInput(f"{name}: {text[:80]!r} is not valid") from None


@dataclass(frozen=True)
class AlertFilter:
    alert_class: str | None = None
    min_severity: int | None = None
    device: bytes | None = None
    since_ms: int | None = None

    @classmethod
    def parse(cls, query: Any) -> AlertFilter:
        """From a URL's query string; a bad value is ``InvalidInput`` naming the parameter."""
        alert_class = query.get("class") or None
        if alert_class is not None and alert_class not in ALERT_CLASSES:
            raise InvalidInput(f"class must be one of {', '.join(ALERT_CLASSES)}")
        severity = _parsed(query, "severity", int)
        since = _parsed(query, "since_ms", int)
        device = _parsed(query, "device", bytes.fromhex)
        if severity is not None and not 1 <= severity <= 4:
            raise InvalidInput("severity must be 1..4")
        if device is not None and len(device) != 32:
            raise InvalidInput("device must be a 64-hex-digit pseudonym")
        return cls(alert_class, severity, device, since)


@dataclass(frozen=True)
class AlertRow:
    alert_id: int
    height: int
    block_time_ms: int
    hospital: str
    subject_kind: str
    subject: str
    alert_class: str
    severity: int
    count: int
    score: float
    model_version: int
    tx_hash: str
    ack: Ack | None


def alert_row(alert: StoredAlert, acks: dict[int, Ack]) -> AlertRow:
    return AlertRow(alert.alert_id, alert.height, alert.block_time_ms, alert.hospital, alert.subject_kind,
                    alert.subject.hex(), alert.alert_class, alert.severity, alert.count, alert.score_ppm / 1e6,
                    alert.model_version, alert.tx_hash.hex(), acks.get(alert.alert_id))


async def alerts_view(source: ChainSource, index: ChainIndex, f: AlertFilter) -> list[AlertRow]:
    """Alerts in the index's window matching ``f``, newest first."""
    found: list[StoredAlert] = []
    cursor = None
    while len(found) < MAX_ALERTS:
        page = await source.alerts(alert_class=f.alert_class, min_severity=f.min_severity, subject=f.device,
                                   from_height=index.first_height, cursor=cursor, limit=500)
        found += page.alerts
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    rows = [alert_row(a, index.acks) for a in found if f.since_ms is None or a.block_time_ms >= f.since_ms]
    return rows[::-1]


# --- models ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParticipantRow:
    hospital: str
    num_samples: int
    weight: int
    accepted: bool
    excluded: str | None
    norm_clipped: bool
    epsilon: float | None
    delta: float | None


@dataclass(frozen=True)
class RoundRow:
    round: int
    status: str
    reason: str | None
    base_version: int
    new_version: int | None
    opened_height: int
    closed_height: int | None
    participants: list[ParticipantRow]


@dataclass(frozen=True)
class PrivacyRow:
    hospital: str
    round: int
    epsilon: float
    delta: float


@dataclass(frozen=True)
class EvalPoint:
    version: int
    auroc: float | None
    windows: int
    deteriorations: int


@dataclass(frozen=True)
class ModelView:
    id: str
    task: str
    rule: str
    num_params: int
    round_length_blocks: int
    latest_version: int
    rounds: list[RoundRow]
    privacy: list[PrivacyRow]
    """Each hospital's latest reported (epsilon, delta): its own accountant's total, signed into its update."""
    evaluation: list[EvalPoint]
    evaluation_note: str
    withdrawn: list[TaintedRound]
    """Rounds whose aggregate used patients who later withdrew consent (``consent_provenance``)."""
    consent_note: str


async def consent_status(source: ChainSource, model_id: str) -> tuple[list[TaintedRound], str]:
    """The model's rounds that used later-withdrawn patients, and a line saying what that covers."""
    try:
        tainted = await source.consent_provenance(model_id)
    except ReadRefused as exc:
        return [], f"consent status not shown: this dashboard's key may not read consent_provenance ({exc.message})"
    if not tainted:
        return [], "no round of this model used a patient who later withdrew consent"
    return sorted(tainted, key=lambda t: t.round), (
        f"{len(tainted)} round(s) used patients who later withdrew consent; later versions build on them")


class ModelCache:
    """Model versions never change once committed, so each is fetched once."""

    def __init__(self, source: ChainSource) -> None:
        self.source = source
        self._models: dict[tuple[str, int], DeteriorationModel] = {}

    async def deterioration(self, version: int | None = None) -> tuple[DeteriorationModel, int]:
        if version is not None and (DETERIORATION, version) in self._models:
            return self._models[(DETERIORATION, version)], version
        spec = next(m.spec for m in await self.source.models() if m.spec.id == DETERIORATION)
        mv = await self.source.model_version(DETERIORATION, version)
        model = DeteriorationModel.from_weights(mv.unflatten(spec), spec.network_layers)
        self._models[(DETERIORATION, mv.version)] = model
        return model, mv.version


async def models_view(source: ChainSource, index: ChainIndex, cache: ModelCache,
                      ward: list[PatientObs]) -> list[ModelView]:
    out = []
    for registered in await source.models():
        spec = registered.spec
        rounds = await source.rounds(spec.id)
        rows, privacy = [], {}
        for r in rounds:
            parts = []
            for p in r.participants:
                name = await index.name_of(p.sender)
                eps = None if p.dp_epsilon_micro is None else p.dp_epsilon_micro / 1e6
                dlt = None if p.dp_delta_nano is None else p.dp_delta_nano / 1e9
                parts.append(ParticipantRow(name, p.num_samples, p.weight, p.excluded is None, p.excluded,
                                            p.norm_clipped, eps, dlt))
                if eps is not None and dlt is not None:
                    privacy[name] = PrivacyRow(name, r.round, eps, dlt)
            rows.append(RoundRow(r.round, r.status, r.reason, r.base_version, r.new_version, r.opened_height,
                                 r.closed_height, parts))
        latest = max([0] + [r.new_version for r in rounds if r.new_version is not None])
        evaluation: list[EvalPoint] = []
        if spec.id == DETERIORATION and ward:
            for version in range(max(0, latest - 29), latest + 1):
                model, _ = await cache.deterioration(version)
                e = evaluate_on_ward(model, ward)
                evaluation.append(EvalPoint(version, e.auroc, e.windows, e.deteriorations))
            note = ("AUROC of each version on this ward's own charted windows (label: NEWS2 >= 5 within 6 h); "
                    "computed here, not on chain")
        else:
            note = "no evaluation: the chain records none for this model and this dashboard has no labelled data for it"
        withdrawn, consent_note = await consent_status(source, spec.id)
        out.append(ModelView(spec.id, spec.task, spec.rule, spec.num_params, spec.round_length_blocks, latest,
                             rows, sorted(privacy.values(), key=lambda p: p.hospital), evaluation, note,
                             withdrawn, consent_note))
    return out


# --- network --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValidatorRow:
    name: str
    url: str
    reachable: bool
    error: str | None = None
    height: int | None = None
    view: int | None = None
    view_changes: float | None = None
    peers: int | None = None
    mempool: int | None = None
    syncing: bool | None = None
    last_commit_age_s: float | None = None
    evidence: float | None = None


@dataclass(frozen=True)
class NetworkView:
    validators: list[ValidatorRow]
    block_interval_s: float | None
    recent_blocks: list[BlockRow]
    missing_signatures: dict[str, int]
    evidence: list[TxRow]
    validator_set: list[dict[str, str]]
    window: tuple[int, int]


def metric_values(text: str) -> dict[str, float]:
    """Each sample name's value, summed over its labels (one validator's exposition)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def validator_row(source: ChainSource) -> ValidatorRow:
    try:
        status = await source.status()
        metrics = metric_values(await source.metrics_text())
    except (FbciError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        return ValidatorRow(name="?", url=source.url, reachable=False, error=str(exc) or type(exc).__name__)
    age = time.time() - status.last_commit_time_ms / 1000 if status.last_commit_time_ms else None
    return ValidatorRow(status.validator, source.url, True, None, status.height, status.view,
                        metrics.get("fbci_view_changes"), status.peers, status.mempool_size, status.syncing, age,
                        metrics.get("fbci_evidence_total"))


async def network_view(sources: list[ChainSource], index: ChainIndex) -> NetworkView:
    rows = list(await asyncio.gather(*(validator_row(s) for s in sources)))
    blocks = list(index.blocks)
    missing = Counter(name for b in blocks for name in b.missing)
    validator_set = [{"name": v.name, "public_key": v.public_key, "p2p_address": v.p2p_address}
                     for v in await sources[0].validators()]
    return NetworkView(rows, index.block_interval_s(), blocks[-20:][::-1], dict(missing), index.evidence[-50:],
                       validator_set, (index.first_height, index.tip))


# --- audit ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditView:
    rows: list[TxRow]
    actors: list[str]
    kinds: list[str]
    window: tuple[int, int]
    note: str
    trail: list[ValidatorTrail]
    """Each validator's audit trail: read, refused (the dashboard's key is no auditor's) or failing."""
    events: list[EventRow]
    trail_note: str


async def audit_view(index: ChainIndex, reader: TrailReader, actor: str | None, kind: str | None,
                     limit: int = 500) -> AuditView:
    """Changes (the transactions in the indexed blocks) beside every validator's trail of reads and changes."""
    txs = list(index.txs)
    rows = [t for t in reversed(txs) if (actor is None or t.actor == actor) and (kind is None or t.kind == kind)]
    trail, events = await reader.read()
    shown = [e for e in events if actor is None or e.agent == actor]
    return AuditView(rows[:limit], sorted({t.actor for t in txs} | {e.agent for e in events}),
                     sorted({t.kind for t in txs}), (index.first_height, index.tip),
                     "Changes: every transaction in these blocks, by its signer and kind.", trail, shown[:limit],
                     f"Reads and changes each validator served (its audit_events, newest {RECENT_EVENTS} per "
                     "validator, less this dashboard's own reads), each proven as 'fbci audit verify' proves it: "
                     "its path must rebuild the root of an audit.anchor in a block that height's validators certified.")
