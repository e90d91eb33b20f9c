"""Client sampling per round: the draw's properties, and the contract that enforces it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.accounts import Account, store_account
from core.errors import ContractRejected, InvalidInput, NotDrawn, NotFound
from core.hashing import sha256
from core.state import MemoryState
from fl_contracts import contract, queries, sampling
from fl_contracts.spec import ModelSpec

from .conftest import ctx, payload, sender

keys = st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=60)
seeds = st.binary(min_size=32, max_size=32)
rates = st.integers(min_value=1, max_value=sampling.PPM)


@settings(max_examples=150, deadline=None)
@given(seed=seeds, roster=keys, rate=rates, rnd=st.integers(1, 2**32), data=st.data())
def test_draw_is_deterministic_and_independent_of_roster_order(seed, roster, rate, rnd, data) -> None:
    shuffled = data.draw(st.permutations(roster + roster[: len(roster) // 2]))  # reordered, some listed twice
    first = sampling.draw(seed, "m", rnd, roster, rate)
    assert first == sampling.draw(seed, "m", rnd, list(roster), rate) == sampling.draw(seed, "m", rnd, shuffled, rate)
    assert list(first) == sorted(set(first)) and set(first) <= set(roster)
    assert set(first) == {h for h in roster if sampling.is_drawn(seed, "m", rnd, h, rate)}  # each on its own ticket


@settings(max_examples=150, deadline=None)
@given(seed=seeds, roster=keys, low=rates, high=rates)
def test_a_higher_rate_only_adds_hospitals_and_the_full_rate_takes_all(seed, roster, low, high) -> None:
    low, high = sorted((low, high))
    assert set(sampling.draw(seed, "m", 1, roster, low)) <= set(sampling.draw(seed, "m", 1, roster, high))
    assert set(sampling.draw(seed, "m", 1, roster, sampling.PPM)) == set(roster)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, rate=st.integers(10_000, 990_000))
def test_draw_size_is_binomial_in_the_rate(seed, rate) -> None:
    """The stated rule: Binomial(N, q). Within 6 standard deviations of N*q (a miss has odds below 1e-8)."""
    n, q = 2_000, rate / sampling.PPM
    roster = [sha256(b"h%d" % i) for i in range(n)]
    size = len(sampling.draw(seed, "m", 7, roster, rate))
    assert abs(size - n * q) <= 6 * math.sqrt(n * q * (1 - q)) + 1


@settings(max_examples=60, deadline=None)
@given(a=seeds, b=seeds)
def test_draw_changes_with_the_block_hash_model_and_round(a, b) -> None:
    roster = [sha256(b"h%d" % i) for i in range(128)]
    half = sampling.PPM // 2
    base = sampling.draw(a, "m", 1, roster, half)
    others = [sampling.draw(a, "n", 1, roster, half), sampling.draw(a, "m", 2, roster, half)]
    if a != b:
        others.append(sampling.draw(b, "m", 1, roster, half))
    assert all(o != base for o in others)  # 128 fair coins agreeing by chance: odds 2**-128


def sampled_spec(rate: int = 500_000, **over: object) -> ModelSpec:
    return ModelSpec.for_sequential("lr", [3, 2], frac_bits=8, min_updates=1, max_updates=16, round_length_blocks=5,
                                    max_abs=2.0, max_norm=3.0, max_samples=100).model_copy(
        update={"sample_rate_ppm": rate, **over})


def registered(n: int) -> MemoryState:
    state = MemoryState()
    for i in range(n):
        store_account(state, sender(i), Account(f"hospital{i}", frozenset({contract.HOSPITAL_ROLE}), 0))
    store_account(state, bytes([200]) * 32, Account("gw", frozenset({"gateway"}), 0))  # not on the roster
    return state


def test_only_drawn_hospitals_submit_and_the_round_closes_when_all_have() -> None:
    spec, state = sampled_spec(), registered(12)
    contract.init_models(state, [spec], {spec.id: None}, 0)
    draw = queries._draw(state, queries.DrawParams(model_id=spec.id))
    assert draw.population == 12 and draw.seed == bytes(32) and 0 < len(draw.drawn) < 12
    assert draw.drawn == list(sampling.draw(bytes(32), spec.id, 1, [sender(i) for i in range(12)], spec.sample_rate_ppm))
    drawn = [i for i in range(12) if sender(i) in draw.drawn]
    outsider = next(i for i in range(12) if i not in drawn)
    before = state.snapshot()
    with pytest.raises(NotDrawn) as err:
        contract.submit_update(state, ctx(outsider), payload(spec, [1] * 8))
    assert err.value.code == -32102 and isinstance(err.value, ContractRejected)
    assert err.value.data["fl_reason"] == "not_drawn" and "skip this round" in err.value.message
    assert state.snapshot() == before
    for i in drawn[:-1]:
        contract.submit_update(state, ctx(i), payload(spec, [1] * 8))
    assert contract.end_block(state, 1, sha256(b"block1")) == []  # one drawn hospital still to come
    contract.submit_update(state, ctx(drawn[-1]), payload(spec, [1] * 8))
    (record,) = contract.end_block(state, 2, sha256(b"block2"))  # all drawn sent: closes before the deadline (5)
    assert record.status == "aggregated" and record.accepted == len(drawn)
    nxt = sampling.load_draw(state, spec.id, 2)
    assert nxt is not None and nxt.seed == sha256(b"block2")  # round 2 drawn from the hash of the block it opened at
    assert nxt.drawn == list(sampling.draw(sha256(b"block2"), spec.id, 2, [sender(i) for i in range(12)], 500_000))
    assert queries._draw(state, queries.DrawParams(model_id=spec.id, round=1)).drawn == draw.drawn  # kept


def test_a_round_that_drew_nobody_waits_for_its_deadline() -> None:
    spec, state = sampled_spec(rate=1), registered(3)  # q = 1e-6: almost surely nobody
    contract.init_models(state, [spec], {spec.id: None}, 0)
    assert sampling.load_draw(state, spec.id, 1).drawn == []
    assert contract.end_block(state, 1, sha256(b"x")) == []
    (record,) = contract.end_block(state, 5, sha256(b"y"))
    assert record.status == "failed"


def test_unsampled_models_draw_nothing_and_answer_not_found() -> None:
    spec, state = sampled_spec(rate=None), registered(3)
    contract.init_models(state, [spec], {spec.id: None}, 0)
    assert not list(state.scan(b"fl/draw/"))
    with pytest.raises(NotFound):
        queries._draw(state, queries.DrawParams(model_id=spec.id))
    contract.submit_update(state, ctx(0), payload(spec, [1] * 8))  # everyone may submit


def test_declaration_bounds_the_rate_and_refuses_secure_sampling() -> None:
    doc = sampled_spec().to_doc()
    assert ModelSpec.parse(doc).sample_rate_ppm == 500_000
    assert "sample_rate_ppm" not in sampled_spec(rate=None).to_doc()  # old documents and hashes unchanged
    for bad in (0, sampling.PPM + 1, 0.5):
        with pytest.raises(InvalidInput, match="sample_rate_ppm"):
            ModelSpec.parse({**doc, "sample_rate_ppm": bad})
    with pytest.raises(InvalidInput, match="secure"):
        ModelSpec.parse({**doc, "secure": True})


def test_threshold_is_exact_at_the_ends() -> None:
    assert sampling.threshold(sampling.PPM) == 2**64
    assert sampling.threshold(1) == 2**64 // sampling.PPM
    assert np.all(np.diff([sampling.threshold(r) for r in range(1, 1000)]) > 0)
