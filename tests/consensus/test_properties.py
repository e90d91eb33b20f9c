"""Safety and liveness over thousands of seeded schedules (hypothesis draws seeds and faults).

CI runs a few hundred schedules per test; ``FBCI_SOAK=1`` runs twenty times more.
Every schedule is reproducible: hypothesis is derandomized and has no
database, and a schedule is a pure function of what hypothesis drew.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from consensus import Ed25519Signer, Ed25519Verifier
from consensus.certificates import max_faulty
from core.crypto import PrivateKey
from tests.consensus.adversary import BEHAVIOURS
from tests.consensus.sim import CHAIN, Faults, Simulation, Violation

SOAK = os.environ.get("FBCI_SOAK") == "1"
LIVENESS_BOUND = 600  # virtual ticks after healing; about 12 capped timeouts of 48 ticks


def profile(examples: int) -> settings:
    return settings(max_examples=examples * (20 if SOAK else 1), derandomize=True, database=None,
                    deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def schedules(draw: st.DrawFn, n: int, byzantine_count: st.SearchStrategy[int] | None = None,
              behaviours: tuple[str, ...] = BEHAVIOURS) -> tuple[int, Faults, dict[int, str]]:
    count = draw(byzantine_count if byzantine_count is not None else st.integers(0, max_faulty(n)))
    who = draw(st.permutations(range(n)))[:count]
    byzantine = {i: draw(st.sampled_from(behaviours)) for i in who}
    heal = draw(st.integers(0, 150))
    faults = Faults(drop=draw(st.floats(0, 0.5)), duplicate=draw(st.floats(0, 0.3)),
                    max_delay=draw(st.integers(1, 6)), heal_at=heal,
                    partition_until=draw(st.sampled_from([0, heal // 2, heal])),
                    crash_rate=draw(st.floats(0, 0.2)))
    return draw(st.integers(0, 2**32)), faults, byzantine


def check_safety_and_liveness(n: int, schedule: tuple[int, Faults, dict[int, str]]) -> Simulation:
    seed, faults, byzantine = schedule
    sim = Simulation(n, seed, faults, byzantine)
    target = sim.run_schedule(extra_heights=2, bound=LIVENESS_BOUND)  # raises Violation on a safety breach
    heights = [nd.tip for nd in sim.honest()]
    assert min(heights) >= target, f"no progress within {LIVENESS_BOUND} ticks of healing: {heights}"
    for nd in sim.honest():
        for h, (_, block_hash, cert) in nd.store.items():
            assert cert.height == h and cert.block_hash == block_hash and sim.committed[h] == block_hash
    assert all(ev.validator in {sim.keys[i] for i in byzantine} for ev in sim.evidence)
    return sim


@profile(1200)
@given(schedules(4))
def test_n4_safety_and_liveness_with_up_to_f_byzantine(schedule) -> None:
    """Castro & Liskov 4.2: "the invariant ... ensures that non-faulty replicas agree on the sequence
    numbers of requests that commit locally", and (4.5.2) liveness once messages are delivered in time."""
    check_safety_and_liveness(4, schedule)


@profile(400)
@given(schedules(7))
def test_n7_safety_and_liveness_with_up_to_f_byzantine(schedule) -> None:
    check_safety_and_liveness(7, schedule)


@profile(300)
@given(schedules(4, st.just(0), ()), st.integers(1, 4))
def test_crash_restart_from_the_wal_never_equivocates(schedule, crash_every: int) -> None:
    """PBFT 4.5: a replica must "remember the messages it sent"; the monitor flags any two different
    honest messages for one (sender, height, phase, view), so a crashed replica must recover them."""
    seed, faults, _ = schedule
    faults.crash_rate = 0.2 * crash_every
    faults.heal_at = max(faults.heal_at, 60)
    sim = Simulation(4, seed, faults)
    sim.run_schedule(bound=LIVENESS_BOUND)


def counterexample(n: int, byzantine: int, behaviour: str, examples: int) -> tuple[int, Faults, dict[int, str]]:
    def breaks_safety(schedule: tuple[int, Faults, dict[int, str]]) -> bool:
        try:
            Simulation(n, schedule[0], schedule[1], schedule[2]).run_schedule(bound=200)
        except Violation:
            return True
        return False
    return find(schedules(n, st.just(byzantine), (behaviour,)), breaks_safety,
                settings=settings(max_examples=examples, derandomize=True, database=None, deadline=None))


@pytest.mark.parametrize("n", [4, 7])
def test_f_plus_one_byzantine_break_safety_so_the_checks_are_not_vacuous(n: int) -> None:
    """With f + 1 colluding equivocators quorums no longer intersect in an honest replica:
    the harness must find two honest replicas committing different blocks at one height."""
    seed, _, byzantine = counterexample(n, max_faulty(n) + 1, "equivocate", 500)
    assert len(byzantine) == max_faulty(n) + 1


def test_a_replica_that_forgets_its_wal_is_caught_equivocating() -> None:
    """Twins' amnesia: restarting without the WAL lets an honest-looking replica sign twice; the
    equivocation monitor must notice, which is why the no-equivocation test above means something."""
    def forgets(seed: int) -> bool:
        sim = Simulation(4, seed, Faults(heal_at=80, max_delay=4))
        try:
            for t in range(5, 80, 5):
                victim = sim.nodes[seed % 4]
                if victim.up:
                    sim.crash(victim, 0, forget=True)
                sim.run_until(t)
        except Violation:
            return True
        return False
    find(st.integers(0, 10**6), forgets, settings=settings(max_examples=500, derandomize=True, database=None))


@profile(12)
@given(schedules(4, st.integers(0, 1), ("silent", "equivocate", "bad-sig")))
def test_with_real_ed25519_signatures(schedule) -> None:
    seed, faults, byzantine = schedule
    keys = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
    crypto = (tuple(k.public_key.raw for k in keys), lambda i: Ed25519Signer(keys[i], CHAIN), Ed25519Verifier(CHAIN))
    sim = Simulation(4, seed, faults, byzantine, real_crypto=crypto)
    target = sim.run_schedule(bound=LIVENESS_BOUND)
    assert min(nd.tip for nd in sim.honest()) >= target
