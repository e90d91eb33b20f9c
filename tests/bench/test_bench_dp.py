"""The DP bench's pieces: the accountant calls, the noise calibration, the sampling it runs, one tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import bench_dp


def test_noise_for_reaches_the_target_epsilon_and_sampling_amplifies() -> None:
    sigma = bench_dp.noise_for(3.0, 0.2, 20)
    assert bench_dp.epsilon_of([(sigma, 0.2)] * 20) == pytest.approx(3.0, abs=0.05)
    # the same noise without sampling (every hospital every round) spends far more
    assert bench_dp.epsilon_of([(sigma, 1.0)] * 20) > 4 * bench_dp.epsilon_of([(sigma, 0.2)] * 20)
    assert bench_dp.epsilon_of([]) == 0.0


def test_opacus_epsilon_matches_the_gaussian_mechanism_at_full_rate() -> None:
    """One unsampled Gaussian step: RDP of order a is a / (2 sigma^2) (Mironov 2017), so the conversion is known."""
    sigma, delta = 2.0, 1e-5
    expected = min(a / (2 * sigma**2) + math.log(1 / delta) / (a - 1) for a in bench_dp.ALPHAS if a > 1)
    assert bench_dp.epsilon_of([(sigma, 1.0)], delta) <= expected + 1e-9
    assert bench_dp.epsilon_of([(sigma, 1.0)], delta) >= 0.5 * expected


def test_noise_shares_sum_to_the_central_noise_over_the_fixed_denominator() -> None:
    rng = np.random.default_rng(0)
    k, hospitals, rate, sigma, clip = 8, 40, 0.2, 1.5, 0.5
    zero = [np.zeros(20_000) for _ in range(k)]
    mean = np.mean(bench_dp.noise_shares(zero, sigma, clip, rate, hospitals, rng), axis=0)  # the chain's mean
    assert np.std(mean) == pytest.approx(sigma * clip / (rate * hospitals), rel=0.03)
    big = [np.full(4, 10.0)] * k  # clipped to the norm before any noise
    out = bench_dp.noise_shares(big, 0.0, clip, rate, hospitals, rng)
    assert np.linalg.norm(out[0]) == pytest.approx(clip * k / (rate * hospitals))


def test_a_round_of_the_bench_uses_the_contracts_draw_at_the_rate() -> None:
    data = bench_dp.hospital_data(50)
    assert len(data[0]) == 50 and min(len(y) for _, y in data[0]) >= 2
    out = bench_dp.run(bench_dp.Setting(50, 0.2, 1.0, 0.3), data, rounds=6, seed=0)
    assert abs(out["mean_cohort"] - 10) < 4  # Binomial(50, 0.2) averaged over 6 rounds
    assert 0.5 < out["accuracy"] <= 1 and 0 <= out["mia_advantage"] <= 1 and out["clipped_by_chain"] == 0
    assert out["epsilon"] == pytest.approx(bench_dp.epsilon_of([(1.0, 0.2)] * 6))
    assert out["eps_member"] > out["epsilon"]  # who reads the plain shares is owed less
    assert bench_dp.mia_bound(out["epsilon"]) > 0


def test_operating_point_is_the_most_accurate_within_the_epsilon() -> None:
    rows = [{"hospitals": 50, "epsilon": None, "accuracy": 0.96, "cost_pts": 0.0},
            {"hospitals": 50, "epsilon": 2.9, "accuracy": 0.95, "cost_pts": 1.0},
            {"hospitals": 50, "epsilon": 2.0, "accuracy": 0.93, "cost_pts": 3.0},
            {"hospitals": 50, "epsilon": 8.0, "accuracy": 0.96, "cost_pts": 0.0}]
    point = bench_dp.operating_points(rows)["50"]
    assert point["epsilon"] == 2.9 and point["meets_cost"]


def test_lira_scores_find_a_memorising_model_and_not_an_independent_one() -> None:
    rng = np.random.default_rng(9)
    member = rng.random((17, 400)) < 0.5
    leaky = np.where(member, 2.0, 0.0) + rng.normal(0, 0.5, member.shape)  # confidence jumps on training examples
    scored, advantage, tpr_low = bench_dp.lira_scores(member, leaky)
    assert scored == 400 and advantage > 0.8 and tpr_low > 0.3
    _, blind, _ = bench_dp.lira_scores(member, rng.normal(0, 0.5, member.shape))
    assert blind < 0.2
