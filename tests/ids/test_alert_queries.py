"""alerts_query pages by seeking its index: a page reads its own entries, not every alert before it."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.hashing import sha256
from core.state import TxContext
from ids.alerts import AlertPayload, query_alerts, submit_alert
from tests.counting_state import CountingState

GATEWAY = b"\x07" * 32


def _alert(i: int, hospital: str) -> AlertPayload:
    return AlertPayload(hospital=hospital, subject_kind="device", subject=sha256(b"dev%d" % (i % 7)),
                        alert_class="spoofing" if i % 3 else "flooding", severity=1 + i % 4, window_start_ms=i,
                        window_ms=60_000, count=1, score_ppm=900_000, feature_digest=bytes(32), model_version=1)


@pytest.fixture(scope="module")
def state() -> CountingState:
    """2,000 alerts over 200 heights from two hospitals."""
    s = CountingState()
    for i in range(2000):
        height = 1 + i // 10
        reporter = "st-mary-icu" if i % 2 else "valley-rehab"
        ctx = TxContext("test", height, 1000 * height, GATEWAY, frozenset({"gateway"}), sha256(b"tx%d" % i), reporter)
        submit_alert(s, ctx, _alert(i, reporter).model_dump())
    return s


def _pages(state: CountingState, limit: int, **filters: object) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        found, cursor = query_alerts(state, cursor=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        pages.append([a.alert_id for a in found])
        if cursor is None:
            return pages


def test_paging_returns_every_match_once_in_order(state: CountingState) -> None:
    pages = _pages(state, 90, hospital="st-mary-icu", alert_class="flooding")
    ids = [i for page in pages for i in page]
    expected = [i + 1 for i in range(2000) if i % 2 and not i % 3]
    assert ids == expected and all(len(p) == 90 for p in pages[:-1])


def test_a_late_page_reads_its_own_entries_not_the_alerts_before_it(state: CountingState) -> None:
    _, cursor = query_alerts(state, limit=500)
    _, cursor = query_alerts(state, cursor=cursor, limit=500)
    _, cursor = query_alerts(state, cursor=cursor, limit=500)  # three pages in: 1,500 alerts behind the cursor
    state.scanned = 0
    last, more = query_alerts(state, cursor=cursor, limit=500)
    assert [a.alert_id for a in last] == list(range(1501, 2001)) and more is None
    assert state.scanned == 500  # a scan from the start would read 2,000


def test_a_height_range_seeks_to_its_first_height(state: CountingState) -> None:
    state.scanned = 0
    found, _ = query_alerts(state, from_height=191, to_height=192, limit=500)
    assert [a.height for a in found] == [191] * 10 + [192] * 10
    assert state.scanned == 21  # the twenty, then the first of height 193 that ends the walk


@pytest.mark.parametrize("cursor", ["²" * 32, "1", "00" * 15, "zz" * 16, "0X" + "0" * 30, "AB" * 16])
def test_a_cursor_that_no_page_returned_is_invalid_input(state: CountingState, cursor: str) -> None:
    with pytest.raises(InvalidInput, match="cursor"):
        query_alerts(state, cursor=cursor)


def test_a_min_severity_filter_alone_reads_only_its_matches(state: CountingState) -> None:
    state.scanned = 0
    found, more = query_alerts(state, min_severity=4, limit=500)
    assert [a.alert_id for a in found] == [i + 1 for i in range(2000) if i % 4 == 3] and more is None
    assert state.scanned == 500  # the severity index: the 500 critical alerts, not all 2,000
    state.scanned = 0
    assert len(query_alerts(state, min_severity=1, limit=500)[0]) == 500 and state.scanned == 501


def test_a_page_reads_at_most_max_scan_entries_and_paging_still_finds_every_match(state: CountingState) -> None:
    """hospital + subject is served by the subject index; the hospital filter skips half of what it reads."""
    device = sha256(b"dev3")
    expected = [i + 1 for i in range(2000) if i % 7 == 3 and i % 2 and 1 + i % 4 >= 3]
    ids, cursor, reads = [], None, []
    while True:
        state.scanned = 0
        found, cursor = query_alerts(state, device=device, hospital="st-mary-icu", min_severity=3, cursor=cursor,
                                     limit=500, max_scan=40)
        reads.append(state.scanned)
        ids += [a.alert_id for a in found]
        if cursor is None:
            break
    assert ids == expected and max(reads) <= 41 and len(reads) > 1
