from __future__ import annotations

import pytest

from core.errors import RateLimited
from core.hashing import sha256
from core.state import TxContext
from core.state import MemoryState
from ids.alerts import query_alerts, submit_alert
from ids.selfdefence import (
    DEFAULT_THRESHOLDS, MisbehaviourMonitor, Offender, RequestGuard, TokenBucketLimiter, address_subject,
)

VALIDATOR_CTX = TxContext("test", 7, 1_000_000, sha256(b"validator-0"), frozenset({"validator"}), sha256(b"tx"),
                          "st-mary-icu")


def test_token_bucket_allows_burst_then_rate() -> None:
    limiter = TokenBucketLimiter(rate=10.0, burst=5)
    assert [limiter.allow("k", 0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.retry_after_ms("k", 0) == 101
    assert not limiter.allow("k", 50) and limiter.allow("k", 160)
    assert limiter.allow("other", 0)
    assert limiter.allow("k", 10_000) and limiter.allow("k", 0)  # clock going back never mints tokens


def test_token_bucket_memory_is_bounded() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_keys=100)
    for i in range(1000):
        limiter.allow(i, 0)
    assert len(limiter._buckets) == 100


def test_monitor_alerts_once_per_offender_class_and_window() -> None:
    monitor = MisbehaviourMonitor("st-mary-icu", window_ms=60_000)
    offender = Offender("client_key", sha256(b"client"))
    results = [monitor.record("bad_signature", offender, 1000 + i) for i in range(20)]
    alerts = [a for a in results if a is not None]
    assert len(alerts) == 1 and results.index(alerts[0]) == DEFAULT_THRESHOLDS["bad_signature"] - 1
    assert alerts[0].count == 5 and alerts[0].subject_kind == "client_key"
    assert monitor.record("bad_signature", offender, 61_000) is None  # a new window starts counting again
    validator = Offender("validator", sha256(b"v3"))
    equivocation = monitor.record("equivocation", validator, 1000, evidence=b"two votes")
    assert equivocation is not None and equivocation.severity == 4 and equivocation.feature_digest == sha256(b"two votes")
    with pytest.raises(ValueError):
        monitor.record("sneezing", offender, 0)
    with pytest.raises(ValueError):
        MisbehaviourMonitor("x", thresholds={"equivocation": 1})


def test_flooding_one_client_leaves_honest_clients_served_and_the_alert_lands_on_chain() -> None:
    guard = RequestGuard(MisbehaviourMonitor("st-mary-icu"), per_key=TokenBucketLimiter(20.0, 40),
                         per_address=TokenBucketLimiter(200.0, 400))
    flooder, honest = sha256(b"flooder"), sha256(b"honest")
    refused, alerts, honest_served = 0, [], 0
    for i in range(2000):  # 1 000 requests per second from the flooder for 2 s
        now = i
        admission = guard.admit("10.0.0.66", flooder, now)
        refused += not admission.allowed
        if admission.alert is not None:
            alerts.append(admission.alert)
        if not admission.allowed:
            assert isinstance(admission.error, RateLimited) and "retry in" in admission.error.message
            assert admission.error.to_json()["code"] == -32029
        if i % 100 == 0:  # an honest client's 10 requests per second from another address
            honest_served += guard.admit("10.0.0.7", honest, now).allowed
    assert refused > 1800 and honest_served == 20
    # one alert per offender: the client key and, as it also exceeds the address budget, its address
    assert {(a.subject_kind, a.subject) for a in alerts} == {
        ("client_key", flooder), ("address", address_subject("10.0.0.66"))}
    assert {a.alert_class for a in alerts} == {"request_flood"}
    state = MemoryState()
    for i, a in enumerate(alerts):
        submit_alert(state, VALIDATOR_CTX, a.to_payload())
    [stored], _ = query_alerts(state, device=flooder)
    assert stored.alert_class == "request_flood" and stored.sender == VALIDATOR_CTX.sender


def test_address_flood_is_attributed_to_the_hashed_address() -> None:
    guard = RequestGuard(MisbehaviourMonitor("st-mary-icu"), per_address=TokenBucketLimiter(10.0, 10))
    alerts = [a.alert for i in range(500) if (a := guard.admit("192.0.2.9", None, i)).alert]
    assert len(alerts) == 1 and alerts[0].subject == address_subject("192.0.2.9")
    assert alerts[0].subject_kind == "address" and b"192.0.2.9" not in alerts[0].subject
