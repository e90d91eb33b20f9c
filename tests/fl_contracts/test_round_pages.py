"""fl_rounds pages by seeking the round records: a page reads its own entries, never the whole history."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fl_contracts import contract
from fl_contracts.queries import MAX_ROUNDS_PAGE, RoundsParams
from fl_contracts.spec import ModelSpec
from tests.counting_state import CountingState

ROUNDS = 300


@pytest.fixture(scope="module")
def state() -> CountingState:
    """300 closed (failed: nobody trained) rounds of a one-block round length; round 301 is open."""
    spec = ModelSpec.for_sequential("lr", [3, 2], frac_bits=8, min_updates=1, max_updates=3, round_length_blocks=1,
                                    max_abs=2.0, max_norm=3.0, max_samples=100)
    s = CountingState()
    contract.init_models(s, [spec], {spec.id: None}, 0)
    for height in range(1, ROUNDS + 1):
        contract.end_block(s, height)
    return s


def test_the_default_page_is_the_newest_rounds_ending_with_the_open_one(state: CountingState) -> None:
    state.scanned = 0
    page = contract.round_page(state, "lr", None, 100)
    assert [r.round for r in page] == list(range(202, 302)) and page[-1].status == "open"
    assert state.scanned == 99  # the 99 closed ones on the page, found by one seek; not the 300
    assert page == contract.round_history(state, "lr")[-100:]


def test_paging_from_round_one_visits_every_round_once_reading_only_its_page(state: CountingState) -> None:
    seen, cursor, reads = [], 1, []
    while True:
        state.scanned = 0
        page = contract.round_page(state, "lr", cursor, 64)
        reads.append(state.scanned)
        seen += [r.round for r in page]
        if not page or page[-1].status == "open":
            break
        cursor = page[-1].round + 1
    assert seen == list(range(1, ROUNDS + 2)) and max(reads) <= 64
    assert contract.round_page(state, "lr", ROUNDS + 5, 10) == []  # past the open round: nothing


def test_the_page_size_is_bounded() -> None:
    with pytest.raises(ValidationError):
        RoundsParams(model_id="lr", limit=MAX_ROUNDS_PAGE + 1)
    with pytest.raises(ValidationError):
        RoundsParams(model_id="lr", from_round=0)
    assert RoundsParams(model_id="lr").limit == 100
