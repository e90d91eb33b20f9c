"""Safety and liveness while the validator set changes (hypothesis draws seeds and faults, as in
test_properties.py): sets decided in block H decide from H + 2, and each replica learns a set only from the
blocks it committed.

The membership: genesis {0..6} (n = 7, f = 2) with replicas 0 and 1 Byzantine; block 3 removes them
(n = 5, f = 1); block 6 adds replica 7, Byzantine too (n = 6, f = 1). So there are f Byzantine replicas of
the old set and f of the new one, and the removed ones keep sending. The faulty phase (drops, partitions,
crashes) covers both changes, so each is in flight during view changes.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from consensus.certificates import max_faulty
from tests.consensus.sim import Faults, Membership, Simulation, Violation
from tests.consensus.test_properties import LIVENESS_BOUND, profile

GENESIS = tuple(range(7))
SHRUNK = tuple(range(2, 7))
GROWN = (*SHRUNK, 7)
MEMBERSHIP = Membership(GENESIS, ((3, SHRUNK), (6, GROWN)))
BEHAVIOURS = ("silent", "equivocate", "random-votes", "bad-sig", "replay")


@st.composite
def faults(draw: st.DrawFn) -> tuple[int, Faults]:
    heal = draw(st.integers(40, 150))
    return draw(st.integers(0, 2**32)), Faults(
        drop=draw(st.floats(0, 0.4)), duplicate=draw(st.floats(0, 0.3)), max_delay=draw(st.integers(1, 5)),
        heal_at=heal, partition_until=draw(st.sampled_from([0, heal // 2])), crash_rate=draw(st.floats(0, 0.15)))


def run(seed: int, fault: Faults, byzantine: dict[int, str], membership: Membership = MEMBERSHIP) -> Simulation:
    sim = Simulation(8, seed, fault, byzantine, membership=membership)
    target = sim.run_schedule(extra_heights=3, bound=LIVENESS_BOUND)  # raises Violation on a safety breach
    target = max(target, 10)  # past both changes
    t = sim.now
    while sim.min_honest_height() < target and sim.now < t + LIVENESS_BOUND:
        sim.run_until(sim.now + 5, stop=lambda: sim.min_honest_height() >= target)
    heights = [nd.tip for nd in sim.honest()]
    assert min(heights) >= target, f"no progress to {target}: {heights}"
    for nd in sim.honest():
        for h, (_, block_hash, cert) in nd.store.items():
            assert sim.committed[h] == block_hash
            cert.verify("sim-chain", sim.validators_at(h), sim.verifier)
    assert all(ev.validator in {sim.keys[i] for i in byzantine} for ev in sim.evidence)
    return sim


def test_the_membership_keeps_each_set_within_its_f() -> None:
    for members in (GENESIS, SHRUNK, GROWN):
        byzantine = {0, 1, 7} & set(members)
        assert len(byzantine) <= max_faulty(len(members))


@profile(30)
@given(faults(), st.sampled_from(BEHAVIOURS), st.sampled_from(BEHAVIOURS))
def test_safety_and_liveness_with_f_byzantine_of_the_old_set_and_f_of_the_new(schedule, old: str, new: str) -> None:
    seed, fault = schedule
    run(seed, fault, {0: old, 1: old, 7: new})


@profile(20)
@given(faults(), st.integers(1, 6))
def test_a_replica_offline_across_both_changes_catches_up_and_votes(schedule, down_from: int) -> None:
    """Replica 2 is in every set; it goes down before the first change and comes back after the second with
    sets it never heard of, syncs (each certificate against its own height's set) and votes again."""
    seed, fault = schedule
    sim = Simulation(8, seed, fault, {0: "silent"}, membership=MEMBERSHIP)
    sim.run_until(down_from)
    assume(sim.nodes[2].tip < 3)
    sim.crash(sim.nodes[2], down_for=10_000)
    while sim.now < 3000 and min(sim.nodes[i].tip for i in GROWN if i != 2) < 12:
        sim.run_until(sim.now + 5)
    assert sim.nodes[2].tip < 3 and min(sim.nodes[i].tip for i in GROWN if i != 2) >= 12
    back = sim.now
    sim._restart(sim.nodes[2])
    start = max(nd.tip for nd in sim.nodes)
    sim.run_until(back + LIVENESS_BOUND, stop=lambda: sim.nodes[2].tip >= start + 2 and voted(sim, 2, start))
    assert sim.nodes[2].tip >= start + 2 and voted(sim, 2, start)
    assert voted(sim, 7, 7) and not voted(sim, 7, 0, before=8)  # the joiner votes from height 8, never before


ROTATED = (0, 1, 2, 3, 4, 5, 7)
ROTATION = Membership(GENESIS, ((3, ROTATED),))
"""Block 3 replaces replica 6's key by replica 7's (a validator's consensus-key rotation: one key swapped in
place), so from height 5 the old key decides nothing."""


@profile(20)
@given(faults(), st.sampled_from(BEHAVIOURS), st.sampled_from(BEHAVIOURS))
def test_a_key_rotation_in_flight_during_view_changes_and_the_old_keys_votes_refused(schedule, leaked: str,
                                                                                     other: str) -> None:
    """The old key leaked: replica 6 is Byzantine before and after the rotation, with replica 0 (f = 2 of the
    old set; of the new set only replica 0, the old key being outside it). Safety and liveness hold, no
    certificate from height 5 on counts the old key, and the new key votes from height 5, never before."""
    seed, fault = schedule
    sim = run(seed, fault, {0: other, 6: leaked}, ROTATION)
    old = sim.keys[6]
    for nd in sim.honest():
        for h, (_, _, cert) in nd.store.items():
            assert h < 5 or old not in {signer for signer, _ in cert.signatures}, (h, nd.index)
    assert voted(sim, 7, 4) and not voted(sim, 7, 0, before=5)


def voted(sim: Simulation, index: int, after: int, before: int | None = None) -> bool:
    """Whether replica ``index`` signed a commit vote at a height in (after, before)."""
    return any(sender == sim.keys[index] and after < height and (before is None or height < before)
               and kind == "pbft.commit" for sender, height, kind, _ in sim.signed_by_honest)


def test_f_plus_one_byzantine_of_the_new_set_break_safety_so_the_checks_are_not_vacuous() -> None:
    """Replicas 6 and 7 equivocating are f + 1 = 2 of the last set of four: its quorums of three no longer
    meet in an honest replica, and the harness finds two honest replicas committing different blocks."""
    membership = Membership((0, 1, 2, 3), ((1, (1, 2, 3, 6)), (4, (2, 3, 6, 7))))
    found = None
    for seed in range(400):
        try:
            Simulation(8, seed, Faults(heal_at=60, max_delay=4), {6: "equivocate", 7: "equivocate"},
                       membership=membership).run_schedule(bound=200)
        except Violation as exc:
            found = str(exc)
            break
    assert found is not None and found.startswith("two blocks committed at height ")
    assert int(found.rsplit(" ", 1)[1]) >= 6  # a height the last set decides
