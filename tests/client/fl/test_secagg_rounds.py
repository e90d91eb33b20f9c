"""Whole secure rounds: hospitals for real (keys, Shamir, ChaCha20-Poly1305), the contract by direct calls."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ContractRejected, InvalidInput
from fl_contracts import contract, secagg_queries, secure_round
from fl_contracts.aggregation import Updates, aggregate
from fl_contracts.secagg_msgs import RevealedShare, SecUnmask
from fl_contracts.spec import ModelSpec
from tests.client.fl.secagg_sim import SecureSim, secure_spec


def plain_delta(spec: ModelSpec, updates: dict[bytes, npt.NDArray[np.int32]], samples: dict[bytes, int],
                who: list[bytes]) -> npt.NDArray[np.int64]:
    """What a plain FedAvg round makes of the same updates (the contract's own aggregate)."""
    who = sorted(who)
    values = np.stack([updates[s] for s in who]).astype(np.int32)
    weights = np.array([samples[s] for s in who], dtype=np.int64)
    return aggregate("fedavg", {}, Updates(values, weights, tuple(who)), max_abs=spec.max_abs,
                     max_norm=spec.max_norm, max_samples=spec.max_samples).delta


def random_round(sim: SecureSim, seed: int) -> tuple[dict[bytes, npt.NDArray[np.int32]], dict[bytes, int]]:
    rng = np.random.default_rng(seed)
    a = sim.spec.max_abs
    updates = {s: rng.integers(-a, a + 1, sim.spec.num_params).astype(np.int32) for s in sim.senders}
    samples = {s: int(rng.integers(1, 3 * sim.spec.max_samples)) for s in sim.senders}
    return updates, samples


def new_weights(sim: SecureSim) -> npt.NDArray[np.int64]:
    return contract.get_model(sim.state, sim.spec.id).weights_int()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 6), data=st.data())
def test_unmasked_aggregate_equals_plain_fedavg_bit_for_bit(n: int, data: st.DataObject) -> None:
    sim = SecureSim(secure_spec(n), n)
    a = sim.spec.max_abs
    # Coordinates up to max_abs make many norms exceed max_norm, so the hospitals' norm bounding is exercised.
    vec = st.lists(st.integers(-a, a), min_size=sim.spec.num_params, max_size=sim.spec.num_params)
    updates = {s: np.array(data.draw(vec), dtype=np.int32) for s in sim.senders}
    samples = {s: data.draw(st.integers(1, 3 * sim.spec.max_samples)) for s in sim.senders}
    dropped = data.draw(st.lists(st.sampled_from(sim.senders), unique=True, max_size=(n - 1) // 2))
    record = sim.run(updates, samples, dropped)
    assert record.status == "aggregated", record.reason
    alive = [s for s in sim.senders if s not in dropped]
    assert np.array_equal(new_weights(sim), plain_delta(sim.spec, updates, samples, alive))
    assert {p.sender for p in record.participants if p.excluded == "dropped_out"} == set(dropped)


@pytest.mark.parametrize("n, drops", [(5, 1), (10, 2)])
def test_round_survives_dropouts_after_the_shares_stage(n: int, drops: int) -> None:
    sim = SecureSim(secure_spec(n, min_updates=3), n)
    updates, samples = random_round(sim, n)
    dropped = sim.senders[1 : 1 + drops]
    record = sim.run(updates, samples, dropped)
    assert record.status == "aggregated" and record.new_version == 1
    alive = [s for s in sim.senders if s not in dropped]
    assert np.array_equal(new_weights(sim), plain_delta(sim.spec, updates, samples, alive))
    out = secagg_queries.outcome(sim.state, sim.spec.id, 1)
    assert out.shared == sim.senders and out.masked == alive and out.threshold == n // 2 + 1
    assert sim.view().stage == "keys" and sim.view().round == 2
    assert not list(sim.state.scan(b"fl/sec/masked/")) and not list(sim.state.scan(b"fl/sec/reveal/"))


def test_a_second_round_runs_on_the_new_version() -> None:
    sim = SecureSim(secure_spec(4), 4)
    first = random_round(sim, 1)
    sim.run(*first)
    after_first = new_weights(sim)
    sim.closed.clear()
    sim.new_round()
    second = random_round(sim, 2)
    assert sim.run(*second).new_version == 2
    assert np.array_equal(new_weights(sim), after_first + plain_delta(sim.spec, *second, sim.senders))


def test_round_fails_cleanly_when_too_few_masked_inputs_remain() -> None:
    sim = SecureSim(secure_spec(5), 5)
    updates, samples = random_round(sim, 3)
    record = sim.run(updates, samples, drop_after_shares=sim.senders[:3])
    assert record.status == "failed" and record.new_version is None
    assert record.reason is not None and "2 masked inputs" in record.reason and "threshold 3" in record.reason
    history = contract.round_history(sim.state, sim.spec.id)
    assert history[0].status == "failed" and history[0].reason == record.reason
    assert contract.get_model(sim.state, sim.spec.id).version == 0
    assert secagg_queries.outcome(sim.state, sim.spec.id, 1).status == "failed"
    assert sim.view().stage == "keys" and sim.view().round == 2 and not list(sim.state.scan(b"fl/sec/masked/"))


def test_round_fails_when_too_few_keys_or_too_few_reveals() -> None:
    sim = SecureSim(secure_spec(4, min_updates=3), 4)
    sim.keys(sim.senders[:2])
    assert sim.closed[0].status == "failed" and "2 hospitals posted keys" in (sim.closed[0].reason or "")

    sim = SecureSim(secure_spec(5), 5)
    updates, samples = random_round(sim, 4)
    sim.keys(sim.senders)
    sim.shares(sim.senders)
    sim.masked(sim.senders, updates, samples)
    sim.unmask(sim.senders[:2])  # threshold 3: two reveals cannot rebuild any seed
    assert sim.closed[0].status == "failed" and "valid shares" in (sim.closed[0].reason or "")


def _tamper(payload: SecUnmask) -> SecUnmask:
    first = payload.shares[0]
    bad = RevealedShare(dealer=first.dealer, kind=first.kind, share=bytes(b ^ 1 for b in first.share))
    return payload.model_copy(update={"shares": [bad, *payload.shares[1:]]})


def test_a_wrong_share_is_detected_and_its_holder_excluded() -> None:
    sim = SecureSim(secure_spec(5), 5)
    updates, samples = random_round(sim, 5)
    sim.keys(sim.senders)
    sim.shares(sim.senders)
    sim.masked(sim.senders, updates, samples)
    cheat = sim.senders[2]
    honest = [s for s in sim.senders if s != cheat]
    result = sim.post(secure_round.post_unmask, cheat, _tamper(sim.hospitals[cheat].unmask(sim.view(cheat))).model_dump())
    assert result["excluded"] == "wrong_share"
    with pytest.raises(ContractRejected) as exc:  # flagged once, it cannot try again with the right shares
        sim.post(secure_round.post_unmask, cheat, sim.hospitals[cheat].unmask(sim.view(cheat)).model_dump())
    assert exc.value.data["fl_reason"] == "duplicate"
    sim.unmask(honest)
    assert sim.closed[0].status == "aggregated"
    assert secagg_queries.outcome(sim.state, sim.spec.id, 1).wrong_share == [cheat]
    assert np.array_equal(new_weights(sim), plain_delta(sim.spec, updates, samples, sim.senders))


def test_reveals_that_would_expose_both_secrets_are_refused() -> None:
    sim = SecureSim(secure_spec(5), 5)
    updates, samples = random_round(sim, 6)
    sim.keys(sim.senders)
    sim.shares(sim.senders)
    dropout, survivor = sim.senders[0], sim.senders[1]
    sim.masked(sim.senders[1:], updates, samples)
    holder = sim.senders[2]
    mine = sim.hospitals[holder].held
    attempts = [
        RevealedShare(dealer=survivor, kind="s", share=mine[survivor][1]),  # a survivor's mask key
        RevealedShare(dealer=dropout, kind="b", share=mine[dropout][0]),  # a dropout's self-mask seed
    ]
    for bad in attempts:
        before = sim.state.snapshot()
        payload = SecUnmask(model_id=sim.spec.id, round=1, shares=[bad]).model_dump()
        with pytest.raises(ContractRejected) as exc:
            sim.post(secure_round.post_unmask, holder, payload)
        assert exc.value.data["fl_reason"] == "would_expose_both"
        assert sim.state.snapshot() == before
    with pytest.raises(ContractRejected) as exc:  # a dropout reveals nothing: it is not a survivor
        sim.post(secure_round.post_unmask, dropout, SecUnmask(model_id=sim.spec.id, round=1, shares=[]).model_dump())
    assert exc.value.data["fl_reason"] == "not_survivor"


def test_stage_order_membership_and_shapes_are_enforced() -> None:
    sim = SecureSim(secure_spec(3), 3)
    a, b, c = sim.senders
    ha = sim.hospitals[a]
    cases = []
    sim.post(secure_round.post_keys, a, ha.keys().model_dump())
    cases.append((secure_round.post_keys, a, ha.keys().model_dump(), "duplicate"))
    cases.append((secure_round.post_keys, b, {**ha.keys().model_dump(), "mask_pk": bytes(32)}, "invalid_payload"))
    cases.append((secure_round.post_keys, b, {**ha.keys().model_dump(), "round": 2}, "wrong_round"))
    cases.append((secure_round.post_masked, a, {"model_id": "sec", "round": 1, "num_samples": 1, "masked": b""},
                  "wrong_stage"))
    for handler, who, payload, why in cases:
        with pytest.raises(ContractRejected) as exc:
            sim.post(handler, who, payload)
        assert exc.value.data["fl_reason"] == why, (why, exc.value.message)
    for s in (b, c):
        sim.post(secure_round.post_keys, s, sim.hospitals[s].keys().model_dump())
    sim.until_stage_leaves("keys")
    good = ha.shares(sim.view()).model_dump()
    with pytest.raises(ContractRejected) as exc:
        sim.post(secure_round.post_shares, a, {**good, "ciphertexts": good["ciphertexts"][:2]})
    assert exc.value.data["fl_reason"] == "wrong_shape"
    sim.shares(sim.senders)
    masked = ha.masked(sim.view(a), sim.spec, np.zeros(sim.spec.num_params, np.int32), 5).model_dump()
    with pytest.raises(ContractRejected) as exc:
        sim.post(secure_round.post_masked, a, {**masked, "masked": masked["masked"][:-8]})
    assert exc.value.data["fl_reason"] == "wrong_shape"


def test_secure_and_plain_models_refuse_each_others_transactions() -> None:
    sim = SecureSim(secure_spec(3), 3)
    upd = {"model_id": "sec", "round": 1, "base_version": 0, "num_samples": 1,
           "delta": bytes(4 * sim.spec.num_params)}
    with pytest.raises(ContractRejected) as exc:
        contract.submit_update(sim.state, sim.ctx(sim.senders[0]), upd)
    assert exc.value.data["fl_reason"] == "secure_round"
    plain = ModelSpec.model_validate({**sim.spec.model_dump(), "id": "plain", "secure": False})
    contract.init_models(sim.state, [plain], {"plain": None}, 0)
    keys = {**sim.hospitals[sim.senders[0]].keys().model_dump(), "model_id": "plain"}
    with pytest.raises(ContractRejected) as exc:
        sim.post(secure_round.post_keys, sim.senders[0], keys)
    assert exc.value.data["fl_reason"] == "not_secure"
    for _ in range(sim.spec.round_length_blocks):  # the plain lifecycle leaves the secure round alone
        sim.height += 1
        contract.end_block(sim.state, sim.height)
    assert contract.current_round(sim.state, "sec").round == 1


def test_a_hospital_refuses_a_view_with_a_lowered_threshold() -> None:
    """A validator lying about t could collect a secret from fewer shares: the hospital deals none."""
    sim = SecureSim(secure_spec(4), 4)
    sim.keys(sim.senders)
    view = sim.view()
    with pytest.raises(InvalidInput, match="threshold 2 for 4 members"):
        sim.hospitals[sim.senders[0]].shares(view.model_copy(update={"threshold": 2}))


def test_a_survivor_that_reveals_nothing_is_unmasked_from_the_others_shares() -> None:
    sim = SecureSim(secure_spec(5), 5)
    updates, samples = random_round(sim, 8)
    sim.keys(sim.senders)
    sim.shares(sim.senders)
    sim.masked(sim.senders, updates, samples)
    sim.unmask(sim.senders[1:])  # sender 0 posted its masked input, then went silent
    assert sim.closed[0].status == "aggregated"
    assert np.array_equal(new_weights(sim), plain_delta(sim.spec, updates, samples, sim.senders))


def test_a_wrong_own_seed_is_detected_and_the_seed_rebuilt_from_shares() -> None:
    sim = SecureSim(secure_spec(5), 5)
    updates, samples = random_round(sim, 9)
    sim.keys(sim.senders)
    sim.shares(sim.senders)
    sim.masked(sim.senders, updates, samples)
    liar = sim.senders[4]
    honest = sim.hospitals[liar].unmask(sim.view(liar))
    bad = honest.model_copy(update={"own_seed": bytes(16)})
    assert sim.post(secure_round.post_unmask, liar, bad.model_dump())["excluded"] == "wrong_share"
    sim.unmask(sim.senders[:4])
    assert sim.closed[0].status == "aggregated"
    assert secagg_queries.outcome(sim.state, sim.spec.id, 1).wrong_share == [liar]
    assert np.array_equal(new_weights(sim), plain_delta(sim.spec, updates, samples, sim.senders))
