"""The read guard: which JSON-RPC reads are private, who may make them, and what each one leaves.

Genesis ``app_state.read_policy`` maps a method to ``"open"`` or
``"private"``; a method it does not name keeps its query's default
(:class:`core.api.Access`), so with no policy at all models, rounds, deltas,
alerts, consent and audit are private. A private read is answered only for a signed
request (:mod:`core.readauth`) whose timestamp is within the window, whose
nonce is new for its key, whose key is registered and still holds a role, and
whose roles the method admits; some methods narrow further to the reader's
own items (:data:`SCOPES`). Every private read and every refusal is reported
to ``on_read`` as a :class:`ReadOutcome`, which the audit trail records.

Replay protection is a bounded cache of ``(key, nonce)`` seen within the
window. When the cache is full the oldest entry goes, and its timestamp
becomes a floor: a request stamped at or before the floor is refused as
stale, so an evicted nonce can never be replayed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from consent import contract as consent_contract
from core.api import Params, Query
from core.errors import (
    BadReadSignature, FbciError, InvalidGenesis, ReadAuthRequired, ReadForbidden, ReplayedRead, RevokedReader,
    StaleRead, UnknownReader,
)
from core.proofs import ProvenAnswer
from core.readauth import (
    CUSTODIAN_PATH, DEFAULT_WINDOW_MS, READER_PATH, CustodianParams, ReadAuth, ReaderInfo, ReaderParams, verify_read,
)
from fl_contracts.contract import TX_KIND as FL_UPDATE_KIND
from fl_contracts.queries import FL_MODEL_GET
from ids.queries import ALERTS_QUERY

ENTITY_FIELDS = ("model_id", "version", "patient", "hospital", "subject", "alert_class", "round", "height")
"""Params that name what a read is about: the audit event's entity."""
DEFAULT_NONCE_LIMIT = 200_000


class _ReadPolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    read_policy: dict[str, Literal["open", "private"]] = {}


class _AffiliationsDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    affiliations: dict[str, list[str]] = {}


def affiliations(app_state: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Hospital name -> the names that report alerts for it: itself, and the gateways and validator that
    genesis ``app_state.affiliations`` lists under it (an alert names its reporter, a clinician its hospital)."""
    try:
        doc = _AffiliationsDoc.model_validate({"affiliations": app_state.get("affiliations", {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidGenesis(f"app_state.affiliations.{'.'.join(map(str, first['loc'][1:]))}: {first['msg']}"
                             ) from None
    return {hospital: frozenset({hospital, *members}) for hospital, members in doc.affiliations.items()}


def read_policy(queries: Iterable[Query[Any, Any]], app_state: Mapping[str, Any]) -> dict[str, bool]:
    """Method -> private, from each query's default and genesis ``app_state.read_policy``."""
    private = {q.path: q.access.private for q in queries}
    try:
        doc = _ReadPolicyDoc.model_validate({"read_policy": app_state.get("read_policy", {})})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidGenesis(f"app_state.read_policy.{'.'.join(map(str, first['loc'][1:]))}: {first['msg']}") from None
    for method, mode in doc.read_policy.items():
        if method not in private:
            raise InvalidGenesis(f"app_state.read_policy: {method!r} is not a read method; reads are {sorted(private)}")
        private[method] = mode == "private"
    return private


@dataclass(frozen=True)
class ReadOutcome:
    """One private read or refusal, as the audit trail records it (code 0: answered)."""

    method: str
    client: str
    time_ms: int
    code: int
    reason: str
    entity: dict[str, Any]
    reader: bytes | None = None
    reader_name: str | None = None
    roles: tuple[str, ...] = ()


class NonceCache:
    def __init__(self, limit: int = DEFAULT_NONCE_LIMIT) -> None:
        self._seen: dict[tuple[bytes, bytes], int] = {}
        self._limit = limit
        self.floor_ms = -1
        """Timestamps at or below this were evicted: refused as stale."""

    def prune(self, before_ms: int) -> None:
        """Forget nonces stamped before ``before_ms`` (the window refuses them anyway)."""
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] >= before_ms:
                break
            del self._seen[oldest]

    def add(self, key: bytes, nonce: bytes, timestamp_ms: int) -> bool:
        """False when ``(key, nonce)`` was already seen."""
        if (key, nonce) in self._seen:
            return False
        self._seen[(key, nonce)] = timestamp_ms
        if len(self._seen) > self._limit:
            evicted = next(iter(self._seen))
            self.floor_ms = max(self.floor_ms, self._seen.pop(evicted))
        return True


Scope = Callable[[Params, ReaderInfo], None]
ResultScope = Callable[[object, ReaderInfo], None]


def _own_patient(params: Params, reader: ReaderInfo) -> None:
    if "patient_proxy" in reader.roles and not reader.roles & {"auditor", "hospital"}:
        if getattr(params, "patient") != reader.patient:
            raise ReadForbidden("a patient proxy reads only its own patient's history")


def _custodian_only(result: object, reader: ReaderInfo) -> None:
    if reader.roles & {"auditor", "patient_proxy"}:
        return
    if getattr(result, "custodian", None) != reader.hospital:
        raise ReadForbidden("a hospital reads the consent history of its own patients only")


def own_hospital_alerts(reporters: Mapping[str, frozenset[str]]) -> Scope:
    """A clinician reads the alerts its own hospital's accounts reported (``hospital`` names one of them)."""
    def scope(params: Params, reader: ReaderInfo) -> None:
        if reader.roles != frozenset({"clinician"}):
            return
        own = reporters.get(reader.hospital_name or "", frozenset({reader.hospital_name}))
        if getattr(params, "hospital") not in own:
            raise ReadForbidden(f"a clinician reads only its own hospital's alerts: set hospital to one of "
                                f"{sorted(n for n in own if n)}")
    return scope


def _own_updates(params: Params, reader: ReaderInfo) -> None:
    if "auditor" not in reader.roles and getattr(params, "hospital") != reader.public_key:
        raise ReadForbidden("a hospital reads only its own individual updates; others see the aggregates")


PERSONAL_KINDS = frozenset({FL_UPDATE_KIND, consent_contract.SET_KIND, consent_contract.REVOKE_KIND})
"""Transactions whose payload is one hospital's update or one patient's consent."""


def _own_personal_txs(result: object, reader: ReaderInfo) -> None:
    if getattr(result, "kind", None) in PERSONAL_KINDS and not reader.roles & {"auditor", "validator"} \
            and getattr(result, "sender", None) != reader.public_key:
        raise ReadForbidden(f"a {getattr(result, 'kind')} transaction is read by its sender and auditors only")


def _unscoped_pushes(params: Params, reader: ReaderInfo) -> None:
    if reader.roles == frozenset({"clinician"}):
        raise ReadForbidden("a clinician reads its hospital's alerts with alerts_query; pushes are not narrowed")


SUBSCRIBE = "subscribe"
SUBSCRIPTIONS: dict[str, Query[Any, Any]] = {"new_alert": ALERTS_QUERY}
"""Websocket topics and the read whose privacy and roles they follow."""
SCOPES: dict[str, Scope] = {"consent_history": _own_patient, "fl_update_get": _own_updates,
                            SUBSCRIBE: _unscoped_pushes}
RESULT_SCOPES: dict[str, ResultScope] = {"consent_history": _custodian_only, "tx_get": _own_personal_txs}

Ask = Callable[[Params], Awaitable[object]]
LookupReader = Callable[[bytes], Awaitable["ReaderInfo | None"]]
LookupCustodian = Callable[[bytes], Awaitable["bytes | None"]]


async def _no_custodian(patient: bytes) -> bytes | None:
    return None


class ReadGuard:
    def __init__(self, chain_id: str, private: Mapping[str, bool], lookup: LookupReader, *,
                 clock_ms: Callable[[], int], on_read: Callable[[ReadOutcome], None] = lambda o: None,
                 window_ms: int = DEFAULT_WINDOW_MS, nonce_limit: int = DEFAULT_NONCE_LIMIT,
                 reporters: Mapping[str, frozenset[str]] | None = None,
                 custodian: LookupCustodian = _no_custodian) -> None:
        """``reporters``: each hospital's alert reporters (:func:`affiliations`), and ``custodian``: the
        hospital holding a pseudonym; both narrow a clinician to its own hospital."""
        self.chain_id = chain_id
        self.custodian = custodian
        self.scopes = {**SCOPES, ALERTS_QUERY.path: own_hospital_alerts(reporters or {})}
        self.private = dict(private)
        self.lookup = lookup
        self.clock_ms = clock_ms
        self.on_read = on_read
        self.window_ms = window_ms
        self.nonces = NonceCache(nonce_limit)

    def is_private(self, path: str) -> bool:
        return self.private.get(path, False)

    async def read(self, query: Query[Any, Any], params: Params, auth: ReadAuth | None, client: str,
                   ask: Ask) -> object:
        """Answer ``query`` through ``ask`` if the policy and the request allow it; report the outcome."""
        if not self.private.get(query.path, False):
            return await ask(params)
        return await self._guarded(query, params, auth, client, ask)

    async def subscribe(self, topic: str, params: Params, auth: ReadAuth | None, client: str, ask: Ask) -> object:
        """A websocket topic pushes what a read returns, so it is as private as that read
        (:data:`SUBSCRIPTIONS`), for the same roles; the request signs ``subscribe`` and its params."""
        read = SUBSCRIPTIONS.get(topic)
        if read is None or not self.private.get(read.path, False):
            return await ask(params)
        pushed = Query(SUBSCRIBE, read.summary, type(params), str, read.access)
        return await self._guarded(pushed, params, auth, client, ask)

    async def _guarded(self, query: Query[Any, Any], params: Params, auth: ReadAuth | None, client: str,
                       ask: Ask) -> object:
        now = self.clock_ms()
        dumped = params.model_dump(mode="json")
        entity = {k: v for k, v in dumped.items() if k in ENTITY_FIELDS and v is not None}
        reader: ReaderInfo | None = None
        try:
            reader = await self._identify(query, dumped, auth, now)
            self._admit(query, reader, auth, now)
            scope = self.scopes.get(query.path)
            if scope is not None:
                scope(params, reader)
            if query.path == FL_MODEL_GET.path:
                await self._own_patients_prediction(params, reader)
            result = await ask(params)
            result_scope = RESULT_SCOPES.get(query.path)
            if result_scope is not None:
                result_scope(result.result if isinstance(result, ProvenAnswer) else result, reader)
        except FbciError as exc:
            self.on_read(self._outcome(query, client, now, exc.code, exc.reason, entity, auth, reader))
            raise
        self.on_read(self._outcome(query, client, now, 0, "ok", entity, auth, reader))
        return result

    async def _identify(self, query: Query[Any, Any], dumped: dict[str, Any], auth: ReadAuth | None,
                        now: int) -> ReaderInfo:
        """The registered key that signed this very request, recently."""
        if auth is None:
            raise ReadAuthRequired(f"{query.path} is a private read: sign the request (params.auth, see "
                                   "core/readauth.py)")
        if not verify_read(self.chain_id, auth, query.path, dumped):
            raise BadReadSignature("the read signature does not verify for this key, method and params")
        if abs(now - auth.timestamp_ms) > self.window_ms or auth.timestamp_ms <= self.nonces.floor_ms:
            raise StaleRead(f"request time {auth.timestamp_ms} is more than {self.window_ms} ms from the node's "
                            f"clock ({now}); check the client's clock", data={"node_time_ms": now})
        reader = await self.lookup(auth.key)
        if reader is None:
            raise UnknownReader(f"key {auth.key.hex()} is not a registered account")
        return reader

    async def _own_patients_prediction(self, params: Params, reader: ReaderInfo) -> None:
        """A clinician scores only its own hospital's patients: a model read that names a pseudonym
        another hospital holds is refused (one no hospital has named yet is no other hospital's)."""
        patient = getattr(params, "patient", None)
        if reader.roles != frozenset({"clinician"}) or patient is None:
            return
        held_by = await self.custodian(patient)
        if held_by is not None and held_by != reader.hospital:
            raise ReadForbidden("a clinician reads predictions for its own hospital's patients only; "
                                f"patient {patient.hex()[:16]}… is another hospital's")

    def _admit(self, query: Query[Any, Any], reader: ReaderInfo, auth: ReadAuth, now: int) -> None:
        """The reader still holds a role the method admits, and has not sent this request before."""
        if not reader.roles:
            raise RevokedReader(f"key {auth.key.hex()} ({reader.name}) holds no role: it was revoked")
        if not reader.roles & query.access.roles:
            raise ReadForbidden(f"{query.path} is read by the roles {sorted(query.access.roles)}; "
                                f"{reader.name} holds {sorted(reader.roles)}")
        self.nonces.prune(now - self.window_ms)
        if not self.nonces.add(auth.key, auth.nonce, auth.timestamp_ms):
            raise ReplayedRead("this key already sent a request with this nonce")

    @staticmethod
    def _outcome(query: Query[Any, Any], client: str, now: int, code: int, reason: str, entity: dict[str, Any],
                 auth: ReadAuth | None, reader: ReaderInfo | None) -> ReadOutcome:
        return ReadOutcome(method=query.path, client=client, time_ms=now, code=code, reason=reason, entity=entity,
                           reader=auth.key if auth is not None else None,
                           reader_name=reader.name if reader is not None else None,
                           roles=tuple(sorted(reader.roles)) if reader is not None else ())


def default_read_policy(queries: Iterable[Query[Any, Any]]) -> dict[str, Literal["open", "private"]]:
    """Each read's own default (its :class:`core.api.Access`), as ``app_state.read_policy`` writes it:
    ``fbci genesis init`` puts it in genesis so an operator sees which reads are private."""
    return {q.path: "private" if q.access.private else "open" for q in queries}


def read_guard_for(chain_id: str, queries: Iterable[Query[Any, Any]], app_state: Mapping[str, Any],
                   ask: Callable[[str, Params], Awaitable[object]], *, clock_ms: Callable[[], int],
                   on_read: Callable[[ReadOutcome], None]) -> ReadGuard:
    """The guard a validator serves JSON-RPC behind: genesis ``app_state.read_policy`` over each
    query's default, so a genesis that names no policy still keeps models, deltas, alerts,
    consent and audit private."""

    async def lookup(key: bytes) -> ReaderInfo | None:
        found = await ask(READER_PATH, ReaderParams(public_key=key))
        return found if isinstance(found, ReaderInfo) else None

    async def custodian(patient: bytes) -> bytes | None:
        found = await ask(CUSTODIAN_PATH, CustodianParams(patient=patient))
        return found if isinstance(found, bytes) else None

    return ReadGuard(chain_id, read_policy(queries, app_state), lookup, clock_ms=clock_ms, on_read=on_read,
                     reporters=affiliations(app_state), custodian=custodian)
