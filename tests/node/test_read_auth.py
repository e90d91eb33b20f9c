"""Private reads over JSON-RPC: signed requests, and each kind of refusal with its code, each reported."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.rpc import RpcClient
from core.crypto import PrivateKey
from core.errors import (
    BadReadSignature, InvalidGenesis, ReadAuthRequired, ReadForbidden, ReplayedRead, RevokedReader, StaleRead,
    UnknownReader,
)
from core.readauth import ReaderInfo, sign_read
from fl_contracts.queries import FL_MODEL_GET, ModelGetParams
from ids.queries import AlertsQueryParams
from node.app_reads import RPC_QUERIES
from node.read_auth import (
    NonceCache, ReadGuard, ReadOutcome, affiliations, default_read_policy, read_guard_for, read_policy,
)
from node.rpc.server import create_app
from tests.node.conftest import CHAIN_ID

HOSPITAL, GATEWAY, PROXY, REVOKED, STRANGER, CLINICIAN = (PrivateKey(bytes([i]) * 32) for i in range(40, 46))
NOW = 1_700_000_000_000
READERS = {
    HOSPITAL.public_key.raw: ReaderInfo(public_key=HOSPITAL.public_key.raw, name="hospital0",
                                        roles=frozenset({"hospital"}), hospital=HOSPITAL.public_key.raw,
                                        hospital_name="hospital0"),
    GATEWAY.public_key.raw: ReaderInfo(public_key=GATEWAY.public_key.raw, name="gateway0", roles=frozenset({"gateway"})),
    PROXY.public_key.raw: ReaderInfo(public_key=PROXY.public_key.raw, name="proxy", roles=frozenset({"patient_proxy"}),
                                     hospital=HOSPITAL.public_key.raw, patient=bytes(32)),
    REVOKED.public_key.raw: ReaderInfo(public_key=REVOKED.public_key.raw, name="gone", roles=frozenset()),
    CLINICIAN.public_key.raw: ReaderInfo(public_key=CLINICIAN.public_key.raw, name="dr-a",
                                         roles=frozenset({"clinician"}), hospital=HOSPITAL.public_key.raw,
                                         hospital_name="hospital0"),
}


async def lookup(key: bytes) -> ReaderInfo | None:
    return READERS.get(key)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def guard(outcomes: list[ReadOutcome], app_state: dict[str, Any] | None = None, clock: Clock | None = None) -> ReadGuard:
    return ReadGuard(CHAIN_ID, read_policy(RPC_QUERIES, app_state or {}), lookup, clock_ms=clock or Clock(),
                     on_read=outcomes.append)


def signed(key: PrivateKey, method: str, params: dict[str, Any], *, at: int = NOW, nonce: bytes = b"n" * 16,
           sign_params: dict[str, Any] | None = None) -> dict[str, Any]:
    auth = sign_read(key, CHAIN_ID, method, sign_params or params, at, nonce)
    return {**params, "auth": auth.model_dump(mode="json")}


MODEL = ModelGetParams(model_id="sepsis").model_dump(mode="json")


def alerts(**filters: Any) -> dict[str, Any]:
    """What the node signs over: the whole params model, defaults included."""
    return AlertsQueryParams(**filters).model_dump(mode="json")


async def _call(client: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/rpc", json={"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    return await resp.json()


@pytest.mark.parametrize(("params", "error"), [
    (MODEL, ReadAuthRequired),
    (signed(HOSPITAL, "fl_model_get", MODEL, at=NOW - 31_000), StaleRead),
    (signed(HOSPITAL, "fl_model_get", MODEL, at=NOW + 31_000), StaleRead),
    (signed(STRANGER, "fl_model_get", MODEL), UnknownReader),
    (signed(REVOKED, "fl_model_get", MODEL), RevokedReader),
    (signed(PROXY, "fl_model_get", MODEL), ReadForbidden),
    (signed(HOSPITAL, "fl_model_get", MODEL, sign_params={**MODEL, "version": 1}), BadReadSignature),
    (signed(HOSPITAL, "fl_model_get", MODEL) | {"auth": {"key": "00"}}, None),
])
async def test_each_refusal_has_its_code_changes_nothing_and_is_reported(serve, fake_node, params, error) -> None:
    outcomes: list[ReadOutcome] = []
    async with serve(create_app(fake_node, RPC_QUERIES, reads=guard(outcomes))) as client:
        body = await _call(client, "fl_model_get", params)
    if error is None:  # a malformed auth member is invalid input, named
        assert body["error"]["code"] == -32602 and body["error"]["data"]["param"].startswith("auth.")
        return
    assert body["error"]["code"] == error.code and body["error"]["data"]["reason"] == error.reason
    (outcome,) = outcomes
    assert (outcome.method, outcome.code, outcome.reason, outcome.entity) == (
        "fl_model_get", error.code, error.reason, {"model_id": "sepsis"})


async def test_a_signed_read_is_answered_once_and_its_replay_refused(serve, fake_node) -> None:
    outcomes: list[ReadOutcome] = []
    request = signed(HOSPITAL, "fl_model_get", MODEL)
    async with serve(create_app(fake_node, RPC_QUERIES, reads=guard(outcomes))) as client:
        first = await _call(client, "fl_model_get", request)
        again = await _call(client, "fl_model_get", request)
        status = await _call(client, "block_get", {})  # open: no signature needed, not audited
    assert first["result"]["version"] == 2
    assert again["error"]["data"]["reason"] == ReplayedRead.reason
    assert "error" not in status or status["error"]["data"]["reason"] == "not_found"
    assert [(o.code, o.reader_name, o.roles) for o in outcomes] == [
        (0, "hospital0", ("hospital",)), (ReplayedRead.code, "hospital0", ("hospital",))]


async def test_the_client_library_signs_for_its_user(serve, fake_node) -> None:
    outcomes: list[ReadOutcome] = []
    clock = Clock()
    async with serve(create_app(fake_node, RPC_QUERIES, reads=guard(outcomes, clock=clock))) as client:
        url = str(client.make_url("")).rstrip("/")
        import time

        clock.now = time.time_ns() // 1_000_000
        async with RpcClient(url, reader=HOSPITAL) as signed_client, RpcClient(url) as anonymous:
            assert (await signed_client.fl_model_get("sepsis")).version == 2
            assert (await signed_client.fl_model_get("sepsis")).version == 2  # a fresh nonce each time
            with pytest.raises(ReadAuthRequired):
                await anonymous.fl_model_get("sepsis")
    assert [o.code for o in outcomes] == [0, 0, ReadAuthRequired.code]


async def test_a_clinician_reads_only_its_own_hospitals_alerts(serve, fake_node) -> None:
    """An alert names its reporter (a gateway or validator account), a clinician its hospital: genesis
    ``affiliations`` ties them, so the clinician reads its gateway's and validator's alerts and no one else's."""
    outcomes: list[ReadOutcome] = []
    state = {"affiliations": {"hospital0": ["gateway0", "node0"], "hospital1": ["gateway1", "node1"]}}
    reads = ReadGuard(CHAIN_ID, read_policy(RPC_QUERIES, {}), lookup, clock_ms=Clock(), on_read=outcomes.append,
                      reporters=affiliations(state))
    async with serve(create_app(fake_node, RPC_QUERIES, reads=reads)) as client:
        answers = {reporter: await _call(client, "alerts_query", signed(
            CLINICIAN, "alerts_query", alerts(hospital=reporter), nonce=bytes([i]) * 16))
            for i, reporter in enumerate(("gateway0", "node0", "hospital0", "gateway1", "node1", "st-mary"))}
        unfiltered = await _call(client, "alerts_query", signed(CLINICIAN, "alerts_query", alerts(), nonce=b"u" * 16))
        hospital = await _call(client, "alerts_query", signed(HOSPITAL, "alerts_query", alerts(hospital="gateway1")))
    for own in ("gateway0", "node0", "hospital0"):
        assert "alerts" in answers[own]["result"], own  # answered (the fake node ignores the filter itself)
    for other in ("gateway1", "node1", "st-mary"):
        assert answers[other]["error"]["data"]["reason"] == ReadForbidden.reason, other
    assert "['gateway0', 'hospital0', 'node0']" in answers["gateway1"]["error"]["message"]
    assert unfiltered["error"]["data"]["reason"] == ReadForbidden.reason  # not everyone's alerts either
    assert "alerts" in hospital["result"]  # only the clinician role is narrowed
    with pytest.raises(InvalidGenesis, match="app_state.affiliations.hospital0"):
        affiliations({"affiliations": {"hospital0": "gateway0"}})


async def test_genesis_read_policy_opens_or_closes_a_method_and_names_unknown_ones(serve, fake_node) -> None:
    outcomes: list[ReadOutcome] = []
    policy = {"read_policy": {"fl_model_get": "open", "block_get": "private"}}
    async with serve(create_app(fake_node, RPC_QUERIES, reads=guard(outcomes, policy))) as client:
        model = await _call(client, "fl_model_get", MODEL)
        block = await _call(client, "block_get", {})
    assert model["result"]["version"] == 2
    assert block["error"]["data"]["reason"] == ReadAuthRequired.reason
    with pytest.raises(InvalidGenesis, match="'fl_model_gte' is not a read method"):
        read_policy(RPC_QUERIES, {"read_policy": {"fl_model_gte": "open"}})
    with pytest.raises(InvalidGenesis, match="read_policy.fl_model_get"):
        read_policy(RPC_QUERIES, {"read_policy": {"fl_model_get": "secret"}})


PRIVATE_BY_DEFAULT = ("tx_get", "fl_model_get", "fl_rounds", "fl_draw", "fl_update_get", "alerts_query", "consent_history",
                      "consent_check", "consent_provenance", "audit_events", "audit_proof", "audit_anchors")
OPEN_FOR_LIGHT_CLIENTS = ("block_get", "account", "tx_receipt", "fl_models", "consent_policy", "gov_info", "key_history")


async def test_a_genesis_without_read_policy_keeps_models_deltas_alerts_consent_and_audit_private(serve,
                                                                                                  fake_node) -> None:
    """The issue's default: no ``read_policy`` in genesis still means private reads, not an open chain."""
    outcomes: list[ReadOutcome] = []
    reads = read_guard_for(CHAIN_ID, RPC_QUERIES, {}, lambda path, p: lookup(p.public_key), clock_ms=Clock(),
                           on_read=outcomes.append)
    assert {m for m, private in reads.private.items() if private} == set(PRIVATE_BY_DEFAULT)
    assert not any(reads.private[m] for m in OPEN_FOR_LIGHT_CLIENTS)
    async with serve(create_app(fake_node, RPC_QUERIES, reads=reads)) as client:
        anonymous = await _call(client, "fl_model_get", MODEL)
        signed_read = await _call(client, "fl_model_get", signed(HOSPITAL, "fl_model_get", MODEL))
        status = await _call(client, "status", {})
    assert anonymous["error"]["data"]["reason"] == ReadAuthRequired.reason
    assert signed_read["result"]["version"] == 2 and "height" in status["result"]
    assert [(o.method, o.code) for o in outcomes] == [("fl_model_get", ReadAuthRequired.code), ("fl_model_get", 0)]


def test_the_written_out_policy_is_each_reads_default() -> None:
    """What ``fbci genesis init`` writes changes nothing: it is the default, made visible."""
    written = default_read_policy(RPC_QUERIES)
    assert read_policy(RPC_QUERIES, {"read_policy": written}) == read_policy(RPC_QUERIES, {})
    assert sorted(m for m, mode in written.items() if mode == "private") == sorted(PRIVATE_BY_DEFAULT)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=60), st.integers(1, 6))
def test_a_bounded_nonce_cache_never_admits_a_request_twice(requests: list[tuple[int, int]], limit: int) -> None:
    """With the floor rule, eviction cannot reopen a request: the guard admits when ``ts > floor and add()``.

    A replay is the same signed bytes, so the same (nonce, timestamp); the signature binds both."""
    cache = NonceCache(limit)
    admitted: set[tuple[int, int]] = set()
    for nonce, ts in requests:
        if ts > cache.floor_ms and cache.add(b"k", bytes([nonce]), ts):
            assert (nonce, ts) not in admitted, "a request was admitted twice"
            admitted.add((nonce, ts))


def test_params_are_signed_in_their_canonical_form() -> None:
    """By-name order and omitted defaults do not change what is signed: both sides dump the model."""
    a = sign_read(HOSPITAL, CHAIN_ID, FL_MODEL_GET.path, ModelGetParams(model_id="m").model_dump(mode="json"), NOW,
                  b"x" * 16)
    b = sign_read(HOSPITAL, CHAIN_ID, FL_MODEL_GET.path,
                  ModelGetParams.model_validate({"version": None, "model_id": "m"}).model_dump(mode="json"), NOW,
                  b"x" * 16)
    assert a == b
    other_chain = sign_read(HOSPITAL, "another-chain", FL_MODEL_GET.path, {"model_id": "m", "version": None}, NOW,
                            b"x" * 16)
    assert other_chain.signature != a.signature


async def test_individual_updates_are_read_by_their_hospital_and_auditors_only(serve, fake_node) -> None:
    outcomes: list[ReadOutcome] = []
    auditor = PrivateKey(bytes([47]) * 32)
    READERS[auditor.public_key.raw] = ReaderInfo(public_key=auditor.public_key.raw, name="auditor0",
                                                 roles=frozenset({"auditor"}))
    theirs = {"model_id": "sepsis", "hospital": GATEWAY.public_key.raw.hex()}
    mine = {"model_id": "sepsis", "hospital": HOSPITAL.public_key.raw.hex()}
    try:
        async with serve(create_app(fake_node, RPC_QUERIES, reads=guard(outcomes))) as client:
            other = await _call(client, "fl_update_get", signed(HOSPITAL, "fl_update_get", theirs))
            own = await _call(client, "fl_update_get", signed(HOSPITAL, "fl_update_get", mine, nonce=b"o" * 16))
            audited = await _call(client, "fl_update_get", signed(auditor, "fl_update_get", theirs))
    finally:
        del READERS[auditor.public_key.raw]
    assert other["error"]["data"]["reason"] == ReadForbidden.reason and "aggregates" in other["error"]["message"]
    # past the guard: the fake node has no such update, the guard let the read through
    assert own["error"]["data"]["reason"] == "not_found" and audited["error"]["data"]["reason"] == "not_found"
    assert [o.reason for o in outcomes] == ["read_forbidden", "not_found", "not_found"]


async def test_a_committed_update_or_consent_is_read_by_its_sender_and_auditors_only() -> None:
    """tx_get would otherwise hand anyone another hospital's individual delta."""
    from types import SimpleNamespace

    from core.api import TX_GET, TxGetParams

    auditor = PrivateKey(bytes([48]) * 32)
    READERS[auditor.public_key.raw] = ReaderInfo(public_key=auditor.public_key.raw, name="auditor0",
                                                 roles=frozenset({"auditor"}))
    outcomes: list[ReadOutcome] = []
    g = guard(outcomes)
    params = TxGetParams(hash=bytes(32))
    dumped = params.model_dump(mode="json")

    async def read(key: PrivateKey, kind: str, sender: bytes, nonce: bytes) -> object:
        async def ask(p: object) -> object:
            return SimpleNamespace(kind=kind, sender=sender)

        auth = sign_read(key, CHAIN_ID, "tx_get", dumped, NOW, nonce)
        return await g.read(TX_GET, params, auth, "127.0.0.1", ask)

    try:
        other = GATEWAY.public_key.raw
        with pytest.raises(ReadForbidden, match="its sender and auditors only"):
            await read(HOSPITAL, "fl.submit_update", other, b"1" * 16)
        with pytest.raises(ReadForbidden):
            await read(HOSPITAL, "consent.set", other, b"2" * 16)
        assert (await read(HOSPITAL, "fl.submit_update", HOSPITAL.public_key.raw, b"3" * 16)).kind == "fl.submit_update"
        assert (await read(auditor, "fl.submit_update", other, b"4" * 16)).sender == other
        assert (await read(HOSPITAL, "ids.alert", other, b"5" * 16)).kind == "ids.alert"  # not personal
    finally:
        del READERS[auditor.public_key.raw]
    assert [o.code for o in outcomes] == [ReadForbidden.code, ReadForbidden.code, 0, 0, 0]


async def test_alert_pushes_are_as_private_as_alert_reads(serve, fake_node) -> None:
    """A websocket ``new_alert`` subscription would otherwise stream every alert to anyone."""
    outcomes: list[ReadOutcome] = []
    topic = {"topic": "new_alert"}

    async def ws_call(ws: Any, params: dict[str, Any], rid: int) -> dict[str, Any]:
        await ws.send_json({"jsonrpc": "2.0", "method": "subscribe", "params": params, "id": rid})
        return await ws.receive_json()

    async with serve(create_app(fake_node, RPC_QUERIES, reads=guard(outcomes))) as client, \
            client.ws_connect("/ws") as ws:
        anonymous = await ws_call(ws, topic, 1)
        clinician = await ws_call(ws, signed(CLINICIAN, "subscribe", topic), 2)
        hospital = await ws_call(ws, signed(HOSPITAL, "subscribe", topic, nonce=b"s" * 16), 3)
        blocks = await ws_call(ws, {"topic": "new_block"}, 4)  # block pushes carry hashes only: open
    assert anonymous["error"]["data"]["reason"] == ReadAuthRequired.reason
    assert clinician["error"]["data"]["reason"] == ReadForbidden.reason
    assert isinstance(hospital["result"], str) and isinstance(blocks["result"], str)
    assert [(o.method, o.code) for o in outcomes] == [
        ("subscribe", ReadAuthRequired.code), ("subscribe", ReadForbidden.code), ("subscribe", 0)]


async def test_the_openrpc_document_marks_each_reads_access_and_documents_auth(serve, fake_node) -> None:
    """A client (or the RPC fuzzer) learns from ``rpc_discover`` which reads need ``params.auth``, and its shape."""
    reads = guard([], {"read_policy": {"fl_rounds": "open"}})
    async with serve(create_app(fake_node, RPC_QUERIES, reads=reads)) as client:
        doc = (await _call(client, "rpc_discover", {}))["result"]
    methods = {m["name"]: m for m in doc["methods"]}
    model = methods["fl_model_get"]
    assert model["x-access"] == {"private": True, "roles": sorted(FL_MODEL_GET.access.roles)}
    assert model["paramStructure"] == "by-name" and model["params"][-1]["name"] == "auth"
    assert model["params"][-1]["required"] and set(model["params"][-1]["schema"]["properties"]) == {
        "key", "timestamp_ms", "nonce", "signature"}
    assert methods["fl_rounds"]["x-access"]["private"] is False  # the genesis policy opened it
    for open_read in ("block_get", "fl_models", "consent_policy"):
        assert methods[open_read]["x-access"]["private"] is False
        assert "auth" not in [p["name"] for p in methods[open_read]["params"]]
    assert "x-access" not in methods["status"] and "x-access" not in methods["tx_submit"]
    assert "'auth'" in doc["info"]["description"] and "core/readauth.py" in doc["info"]["description"]


async def test_a_clinician_scores_only_its_own_hospitals_patients_and_each_prediction_read_names_the_patient(
        serve, fake_node) -> None:
    ours, theirs, unnamed = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    held = {ours: HOSPITAL.public_key.raw, theirs: STRANGER.public_key.raw}

    async def custodian(patient: bytes) -> bytes | None:
        return held.get(patient)

    outcomes: list[ReadOutcome] = []
    reads = ReadGuard(CHAIN_ID, read_policy(RPC_QUERIES, {}), lookup, clock_ms=Clock(), on_read=outcomes.append,
                      custodian=custodian)

    def predict(patient: bytes, key: PrivateKey = CLINICIAN) -> dict[str, Any]:
        params = ModelGetParams(model_id="sepsis", patient=patient).model_dump(mode="json")
        return signed(key, "fl_model_get", params, nonce=patient[:1] * 8 + key.public_key.raw[:8])

    async with serve(create_app(fake_node, RPC_QUERIES, reads=reads)) as client:
        own = await _call(client, "fl_model_get", predict(ours))
        other = await _call(client, "fl_model_get", predict(theirs))
        fresh = await _call(client, "fl_model_get", predict(unnamed))
        by_hospital = await _call(client, "fl_model_get", predict(theirs, HOSPITAL))  # only clinicians are narrowed
    assert own["result"]["version"] == 2 and fresh["result"]["version"] == 2 and "result" in by_hospital
    assert other["error"]["data"]["reason"] == ReadForbidden.reason and "another hospital" in other["error"]["message"]
    assert [(o.entity.get("patient"), o.code) for o in outcomes] == [
        (ours.hex(), 0), (theirs.hex(), ReadForbidden.code), (unnamed.hex(), 0), (theirs.hex(), 0)]
