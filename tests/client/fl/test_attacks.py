"""The persistent attackers, and the short form of the attack suite that runs in CI (issue 15, part 2)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from client.fl.attacks import ATTACKS, CONFIGS, Attack, RoundView, alie_z  # noqa: E402


def view(own: np.ndarray, honest: list[np.ndarray], n: int = 4, f: int = 1, seed: int = 0) -> RoundView:
    return RoundView(own, honest, n, f, np.random.default_rng(seed))


def test_alie_uses_the_papers_z_with_a_floor() -> None:
    # Baruch et al. 2019: s = floor(n/2 + 1) - f, z = Phi^-1((n - s) / n)
    assert alie_z(50, 24) == pytest.approx(1.75, abs=0.01)
    assert alie_z(4, 1) == 1.0  # the paper's z is 0 here: no attack at all


def test_crafted_vectors() -> None:
    rng = np.random.default_rng(1)
    honest = [rng.normal(1.0, 0.1, 20) for _ in range(3)]
    own = rng.normal(1.0, 0.1, 20)
    mu, sigma = np.mean(honest, axis=0), np.std(honest, axis=0)
    assert np.allclose(ATTACKS["sign_flip"].craft(view(own, honest)), -10 * own)
    assert np.allclose(ATTACKS["ipm"].craft(view(own, honest)), -0.5 * mu)
    assert np.allclose(ATTACKS["alie"].craft(view(own, honest, 7, 2)), mu - alie_z(7, 2) * sigma)
    noise = ATTACKS["gaussian"].craft(view(own, honest))
    assert abs(np.std(noise) - 10 * np.std(mu)) < 0.5 * 10 * np.std(mu)
    # colluders share the round's view, so they send the same vector
    assert np.array_equal(noise, ATTACKS["gaussian"].craft(view(own + 1, honest)))
    assert ATTACKS["label_flip"].labels(np.array([0, 1, 2]), 3).tolist() == [2, 1, 0]
    assert ATTACKS["sign_flip"].labels(np.array([0, 1, 2]), 3).tolist() == [0, 1, 2]


def test_attackers_see_the_honest_deltas_and_claim_the_largest_weight() -> None:
    from client.fl.data import bundled_split
    from client.fl.robustness import spec_for
    from client.fl.simulation import run_federated
    from fl_contracts.contract import round_history

    cfg = CONFIGS[1]
    split = bundled_split("wine", cfg.hospitals, 0.5, 0)
    spec = spec_for("wine", split, cfg, "fedavg", {})
    seen: list[RoundView] = []

    def spy(v: RoundView) -> np.ndarray:
        seen.append(v)
        return np.zeros_like(v.own)

    result = run_federated(spec, split.hospitals, 2, local_epochs=1, lr=0.1, seed=0, attack=Attack("spy", spy),
                           attackers=[0, 3])
    assert len(seen) == 4 and all(len(v.honest) == cfg.hospitals - 2 for v in seen)
    assert all(v.n_hospitals == 7 and v.n_attackers == 2 for v in seen)
    assert result.state is not None
    record = round_history(result.state, spec.id)[0]
    weights = [p.weight for p in record.participants]
    assert sorted(weights)[-2:] == [spec.max_samples] * 2 and weights.count(spec.max_samples) == 2


def default_variant() -> str:
    """The attack-suite name of the catalog's rule for breast cancer (KeyError if the suite never measured it)."""
    from client.fl.robustness import variant_of
    from devnet.catalog import default_models

    [spec] = [s for s in default_models(4) if s.id == "breast_cancer"]
    return variant_of(CONFIGS[0], spec.rule, dict(spec.rule_params))


@pytest.fixture(scope="module")
def short_suite() -> dict[tuple[str, str], float]:
    """One data set, one config, two attacks, three rules (and the oracle): about 20 s on one core."""
    from client.fl.robustness import suite

    torch.set_num_threads(1)
    cells = suite(datasets=["breast_cancer"], alphas=[0.5], configs=[CONFIGS[0]],
                  rules=["fedavg", "median", default_variant()], attacks=["clean", "sign_flip", "label_flip"])
    return {(c.rule, c.attack): c.accuracy for c in cells}


def test_plain_fedavg_collapses_under_a_persistent_sign_flip(short_suite: dict[tuple[str, str], float]) -> None:
    assert short_suite[("fedavg", "sign_flip")] < short_suite[("fedavg", "clean")] - 0.3


@pytest.mark.parametrize("attack", ["sign_flip", "label_flip"])
def test_the_robust_default_holds_within_two_points(short_suite: dict[tuple[str, str], float], attack: str) -> None:
    rule = default_variant()
    assert short_suite[(rule, attack)] >= short_suite[(rule, "clean")] - CONFIGS[0].tolerance
