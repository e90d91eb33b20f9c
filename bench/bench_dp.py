"""Accuracy against epsilon for 4, 20 and 50 hospitals with client sampling: the DP curve of issue 15.

Setup. scikit-learn's breast cancer set (bundled), split into a stratified
test quarter and a training part shared by Dirichlet(0.5) label skew across
``H`` simulated hospitals (at least 2 patients each). The model is the
catalog's logistic regression ([30, 2]). Rounds run in process through the
real FL contract (:class:`client.fl.simulation.InProcessChain`): the model
declares ``sample_rate_ppm``, each round's hospitals are the contract's own
draw from the simulated block hash, an undrawn hospital would be refused, and
the contract's integer FedAvg aggregates.

Mechanism: DP-FedAvg with Poisson sampling and a fixed denominator (McMahan
et al., ICLR 2018). Each of the ``K`` drawn hospitals trains locally with the
client's torch trainer, clips its delta to ``C`` and adds a noise share
``N(0, sigma^2 C^2 / K)`` (``K`` is public in the draw), then scales by
``K / (q H)``; with equal weights the chain's mean is then exactly
``(sum of clipped deltas + N(0, sigma^2 C^2)) / (q H)``. Adding or removing one
hospital moves that sum by at most ``C``, so the rounds are the subsampled
Gaussian mechanism that Opacus's ``RDPAccountant(noise_multiplier=sigma,
sample_rate=q)`` accounts, over every round (a round that drew nobody
counts too).

Who the epsilon protects against. The guarantee is for the released global
models, against someone who sees neither the individual noise shares nor the
draw: a model consumer outside the consortium, or members if the shares were
aggregated securely (the chain refuses secure sampled rounds for now). A
member reading the plain updates on chain sees each share with noise ``sigma
/ sqrt(K)`` in a round it knows the hospital joined; the ``eps_member``
column is that weaker guarantee (Opacus at sample rate 1 over the rounds the
most-drawn hospital joined), reported so the headline number is not read for
more than it is.

Operating point. For each ``H`` the bench tries sample rates and clip
norms and, for each target epsilon, the noise multiplier Opacus says reaches
it in ``ROUNDS`` rounds; accuracy is the mean over seeds (model
initialisation, training order and noise) on the test quarter, against the
non-private run (full participation, no clipping, no noise) of the same split
in the same run. It picks, at each ``H``, the most accurate point with
epsilon <= 3 and checks the target (``H = 50``: at most 2 points below the
non-private accuracy at delta 1e-5). Choosing the clip norm and rate on the
test quarter is itself a (small) leak that the epsilon does not count
(Papernot and Steinke 2022); a deployment fixes them beforehand.

Membership inference: the loss-threshold attack (Yeom et al. 2018,
:func:`client.fl.model_metrics.mia_advantage`), training patients against
the test quarter, with the advantage DP allows for one patient's record
(group privacy over the two hospital-level steps that change one record:
``(e^{2 eps} - 1 + 2 delta') / (e^{2 eps} + 1)``). ``--lira N`` runs the
stronger likelihood-ratio attack with N shadow federations (:func:`lira`)
at 50 hospitals, without DP and at the epsilon-3 operating point.

Run: .venv/bin/python -m bench.bench_dp [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import table, write_result

Array = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]

DELTA = 1e-5
ROUNDS = 20
CLIPS = (0.3, 1.0)
LOCAL_EPOCHS, LR, BATCH = 5, 0.2, 16
TARGET_EPS, TARGET_COST_PTS = 3.0, 2.0
HOSPITALS = (4, 20, 50)
RATES = {4: (0.5, 1.0), 20: (0.25, 0.5, 1.0), 50: (0.2, 0.5, 1.0)}
EPSILONS = (1.0, 3.0, 8.0)
SEEDS = 3
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [64, 96, 128, 192, 256, 384, 512, 1024]
"""RDP orders: Opacus's defaults stop at 63, where the weak member-view guarantees still improve."""


@dataclass(frozen=True)
class Setting:
    hospitals: int
    rate: float
    sigma: float | None
    """None: the non-private run (no clipping, no noise)."""
    clip: float = 1.0


def noise_for(epsilon: float, rate: float, rounds: int, delta: float = DELTA) -> float:
    """The noise multiplier that Opacus's RDP accountant says reaches ``epsilon`` in ``rounds`` rounds at ``rate``."""
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():  # "optimal order is the largest alpha": a looser bound on a probe, never reported
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=rate,
                                          steps=rounds, accountant="rdp", epsilon_tolerance=0.005))


def epsilon_of(steps: list[tuple[float, float]], delta: float = DELTA) -> float:
    """Opacus RDP epsilon of a sequence of (noise multiplier, sample rate) Gaussian steps."""
    from opacus.accountants import RDPAccountant

    if not steps:
        return 0.0
    accountant = RDPAccountant()
    for sigma, rate in steps:
        accountant.step(noise_multiplier=sigma, sample_rate=rate)
    return float(accountant.get_epsilon(delta, alphas=ALPHAS))


def mia_bound(epsilon: float, delta: float = DELTA) -> float:
    """Largest TPR - FPR an (eps, delta) guarantee at the hospital level allows against one record."""
    eps2, delta2 = 2 * epsilon, (1 + math.exp(epsilon)) * delta
    return min(1.0, (math.exp(eps2) - 1 + 2 * delta2) / (math.exp(eps2) + 1))


def hospital_data(hospitals: int, seed: int = 0) -> tuple[list[tuple[Array, Labels]], Array, Labels, Array, Labels]:
    from client.fl.data import breast_cancer_split, dirichlet_split

    split = breast_cancer_split(4, alpha=0.5, seed=seed)  # the standardised train/test split, re-shared below
    parts = dirichlet_split(split.y_train, hospitals, alpha=0.5, seed=seed, min_size=2)
    return ([(split.x_train[p], split.y_train[p]) for p in parts], split.x_train, split.y_train,
            split.x_test, split.y_test)


def noise_shares(deltas: list[Array], sigma: float, clip: float, rate: float, hospitals: int,
                 rng: np.random.Generator) -> list[Array]:
    """Each drawn hospital's submitted update: clipped, its share of the aggregate noise, scaled to the
    fixed denominator (so the chain's equal-weight mean is the DP-FedAvg estimator)."""
    from client.fl.training import clip_l2

    k = len(deltas)
    scale = k / (rate * hospitals)
    return [scale * (clip_l2(d, clip) + rng.normal(0.0, sigma * clip / math.sqrt(k), size=d.shape)) for d in deltas]


def spec_for(hospitals: int, rate: float) -> Any:
    from fl_contracts.spec import ModelSpec

    return ModelSpec.for_sequential("breast_cancer_dp", [30, 2], rule="fedavg", round_length_blocks=1, min_updates=1,
                                    max_updates=hospitals, max_abs=64.0, max_norm=512.0, max_samples=1
                                    ).model_copy(update={"sample_rate_ppm": round(rate * 1_000_000)})


def run(setting: Setting, data: tuple[Any, ...], rounds: int, seed: int) -> dict[str, Any]:
    """One federated run through the contract; accuracy, epsilons and the attack's advantage of its final model."""
    from client.fl.model_metrics import accuracy, losses, mia_advantage
    from client.fl.simulation import InProcessChain
    from client.fl.training import TrainConfig, initial_weights, train_local
    from core.hashing import sha256
    from fl_contracts import contract
    from fl_contracts.fixedpoint import dequantize, encode_delta, quantize

    shares, x_train, y_train, x_test, y_test = data
    h, private = setting.hospitals, setting.sigma is not None
    spec = spec_for(h, setting.rate if private else 1.0)
    fb = spec.fixed_point.frac_bits
    senders = [sha256(b"dp-hospital-%d" % i) for i in range(h)]
    chain = InProcessChain(spec, quantize(initial_weights(spec, seed), fb, spec.max_abs).astype(np.int64), senders)
    cfg, rng = TrainConfig(local_epochs=LOCAL_EPOCHS, lr=LR, batch_size=BATCH), np.random.default_rng([seed, h])
    joined, member_steps, clipped_by_chain, cohort = [0] * h, [[] for _ in range(h)], 0, []
    for _ in range(rounds):
        model = chain.get_model(spec.id)
        base = dequantize(model.version.weights_int(), fb)
        drawn = chain.drawn(spec.id, senders)
        cohort.append(len(drawn))
        deltas = [train_local(spec, base, *shares[i], cfg, seed * 7919 + model.open_round * 131 + i) - base
                  for i in drawn]
        if private and drawn:
            assert setting.sigma is not None
            deltas = noise_shares(deltas, setting.sigma, setting.clip, setting.rate, h, rng)
            for i in drawn:
                joined[i] += 1
                member_steps[i].append((setting.sigma / math.sqrt(len(drawn)), 1.0))
        for i, d in zip(drawn, deltas):
            chain.submit(senders[i], {"model_id": spec.id, "round": model.open_round,
                                      "base_version": model.version.version, "num_samples": 1,
                                      "delta": encode_delta(quantize(d, fb, spec.max_abs))})
        for record in chain.end_block():
            clipped_by_chain += sum(p.norm_clipped for p in record.participants)
    weights = spec.unflatten(dequantize(contract.get_model(chain.state, spec.id).weights_int(), fb))
    eps = epsilon_of([(setting.sigma, setting.rate)] * rounds) if private else None
    most = max(range(h), key=lambda i: joined[i])
    return {"weights": weights, "spec": spec, "accuracy": accuracy(spec, weights, x_test, y_test),
            "mia_advantage": mia_advantage(losses(spec, weights, x_train, y_train), losses(spec, weights, x_test, y_test)),
            "epsilon": eps, "eps_member": epsilon_of(member_steps[most]) if private else None,
            "mean_cohort": float(np.mean(cohort)), "clipped_by_chain": clipped_by_chain}


def measure(hospitals: tuple[int, ...] = HOSPITALS, rates: dict[int, tuple[float, ...]] | None = None,
            epsilons: tuple[float, ...] = EPSILONS, seeds: int = SEEDS, rounds: int = ROUNDS,
            clips: tuple[float, ...] = CLIPS) -> dict[str, Any]:
    rates = rates or RATES
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for h in hospitals:
        data = hospital_data(h)
        base = [run(Setting(h, 1.0, None), data, rounds, s) for s in range(seeds)]
        clean = float(np.mean([b["accuracy"] for b in base]))
        rows.append({"hospitals": h, "rate": 1.0, "clip": None, "target_eps": None, "sigma": None, "epsilon": None,
                     "eps_member": None, "accuracy": clean, "cost_pts": 0.0,
                     "mia_advantage": float(np.mean([b["mia_advantage"] for b in base])), "mia_bound": None,
                     "mean_cohort": float(h), "clipped_by_chain": 0})
        for rate in rates[h]:
            for target, clip in [(t, c) for t in epsilons for c in clips]:
                sigma = noise_for(target, rate, rounds)
                runs = [run(Setting(h, rate, sigma, clip), data, rounds, s) for s in range(seeds)]
                acc = float(np.mean([r["accuracy"] for r in runs]))
                eps = runs[0]["epsilon"]
                rows.append({"hospitals": h, "rate": rate, "clip": clip, "target_eps": target, "sigma": sigma,
                             "epsilon": eps,
                             "eps_member": max(r["eps_member"] for r in runs), "accuracy": acc,
                             "cost_pts": 100 * (clean - acc),
                             "mia_advantage": float(np.mean([r["mia_advantage"] for r in runs])),
                             "mia_bound": mia_bound(eps),
                             "mean_cohort": float(np.mean([r["mean_cohort"] for r in runs])),
                             "clipped_by_chain": sum(r["clipped_by_chain"] for r in runs)})
    return {"rows": rows, "operating_points": operating_points(rows), "rounds": rounds, "seeds": seeds,
            "delta": DELTA, "seconds": time.perf_counter() - started,
            "target": {"hospitals": 50, "epsilon_at_most": TARGET_EPS, "cost_pts_at_most": TARGET_COST_PTS}}


def lira(setting: Setting, shadows: int, rounds: int = ROUNDS, seed: int = 0) -> dict[str, Any]:
    """Likelihood-ratio membership inference with shadow models (Carlini et al., S&P 2022, online, global variance).

    The 569 patients are the candidate pool; the target and each shadow federation train on an independent
    random half, shared across hospitals as above but with at least 1 patient each (at least 2 of about 285
    under Dirichlet(0.5) almost never comes up). An example's score against the target is the log
    likelihood ratio of the target's logit-scaled confidence under the IN and OUT Gaussians the shadows give.
    """
    from client.fl.data import breast_cancer_split, dirichlet_split
    from client.fl.model_metrics import forward

    split = breast_cancer_split(4, alpha=0.5, seed=seed)
    x_all, y_all = np.concatenate([split.x_train, split.x_test]), np.concatenate([split.y_train, split.y_test])
    rng = np.random.default_rng([seed, 2022])
    masks, conf = [], []
    for k in range(shadows + 1):  # model 0 is the target
        mask = rng.random(len(y_all)) < 0.5
        idx = np.flatnonzero(mask)
        parts = dirichlet_split(y_all[idx], setting.hospitals, alpha=0.5, seed=seed * 1000 + k, min_size=1)
        data = ([(x_all[idx[p]], y_all[idx[p]]) for p in parts], x_all[idx], y_all[idx], x_all[~mask], y_all[~mask])
        out = run(setting, data, rounds, seed * 1000 + k)
        z = forward(out["spec"], out["weights"], x_all)
        rows = np.arange(len(y_all))
        others = z.copy()
        others[rows, y_all] = -np.inf
        conf.append(z[rows, y_all] - np.logaddexp.reduce(others, axis=1))  # log(p / (1 - p)), stable at p ~ 1
        masks.append(mask)
    scored, advantage, tpr_low = lira_scores(np.array(masks), np.array(conf))
    return {"hospitals": setting.hospitals, "rate": setting.rate, "sigma": setting.sigma,
            "clip": None if setting.sigma is None else setting.clip, "shadows": shadows, "scored": scored, "lira_advantage": advantage,
            "tpr_at_1pct_fpr": tpr_low}


def lira_scores(member: npt.NDArray[np.bool_], phi: Array) -> tuple[int, float, float]:
    """(examples scored, max TPR - FPR, TPR at FPR <= 1%) against model 0, with models 1.. as shadows.

    ``member[k, i]``: model k trained on example i; ``phi[k, i]``: its logit-scaled confidence there.
    """
    shadow_in, shadow_out = member[1:], ~member[1:]
    with warnings.catch_warnings():  # an example no shadow held in (or out) has no mean: left out below
        warnings.simplefilter("ignore", RuntimeWarning)
        mu_in = np.nanmean(np.where(shadow_in, phi[1:], np.nan), axis=0)
        mu_out = np.nanmean(np.where(shadow_out, phi[1:], np.nan), axis=0)
    sd_in, sd_out = np.nanstd(np.where(shadow_in, phi[1:], np.nan)), np.nanstd(np.where(shadow_out, phi[1:], np.nan))
    ok = ~np.isnan(mu_in) & ~np.isnan(mu_out)
    score = (-((phi[0] - mu_in) / sd_in) ** 2 / 2 - np.log(sd_in)) - (-((phi[0] - mu_out) / sd_out) ** 2 / 2
                                                                     - np.log(sd_out))
    ins, outs = score[ok & member[0]], score[ok & ~member[0]]
    thresholds = np.unique(score[ok])
    tpr = (ins[None, :] >= thresholds[:, None]).mean(axis=1)
    fpr = (outs[None, :] >= thresholds[:, None]).mean(axis=1)
    return int(ok.sum()), float(max(0.0, np.max(tpr - fpr))), float(np.max(tpr[fpr <= 0.01], initial=0.0))


def operating_points(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per hospital count, the most accurate private point with epsilon <= the target, and whether it meets the cost."""
    out = {}
    for h in sorted({r["hospitals"] for r in rows}):
        ok = [r for r in rows if r["hospitals"] == h and r["epsilon"] is not None and r["epsilon"] <= TARGET_EPS + 1e-9]
        if not ok:
            continue
        best = max(ok, key=lambda r: (r["accuracy"], -r["epsilon"]))
        out[str(h)] = {**best, "meets_cost": best["cost_pts"] <= TARGET_COST_PTS}
    return out


COLUMNS = [("hospitals", "H", "d"), ("rate", "q", ".2f"), ("mean_cohort", "cohort", ".1f"), ("clip", "clip", ".1f"),
           ("sigma", "sigma", ".2f"),
           ("epsilon", "eps", ".2f"), ("eps_member", "eps_member", ".1f"), ("accuracy", "acc", ".4f"),
           ("cost_pts", "cost_pts", ".2f"), ("mia_advantage", "mia_adv", ".3f"), ("mia_bound", "mia_bound", ".3f"),
           ("clipped_by_chain", "chain_clips", "d")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 hospitals at q = 0.2, epsilon 3, one clip, one seed")
    parser.add_argument("--lira", type=int, metavar="SHADOWS", help="only the LiRA attack, with this many shadow "
                        "federations, at 50 hospitals without DP and at the epsilon-3 operating point")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.lira:
        point = Setting(50, 0.2, noise_for(TARGET_EPS, 0.2, ROUNDS), CLIPS[0])
        rows = [lira(Setting(50, 1.0, None), args.lira), lira(point, args.lira)]
        print(table(rows, [("hospitals", "H", "d"), ("rate", "q", ".2f"), ("sigma", "sigma", ".2f"),
                           ("clip", "clip", ".1f"), ("shadows", "shadows", "d"), ("scored", "scored", "d"),
                           ("lira_advantage", "lira_adv", ".3f"), ("tpr_at_1pct_fpr", "tpr@1%fpr", ".3f")]))
        print(f"written to {write_result('dp_lira', {'rows': rows, 'rounds': ROUNDS, 'delta': DELTA})}")
        return
    if args.quick:
        result = measure((50,), {50: (0.2,)}, (TARGET_EPS,), seeds=1, clips=(CLIPS[0],))
    else:
        result = measure()
    print(table(result["rows"], COLUMNS))
    for h, point in result["operating_points"].items():
        print(f"H={h}: best with eps <= {TARGET_EPS:g}: q={point['rate']:g} clip={point['clip']:g} "
              f"sigma={point['sigma']:.2f} "
              f"eps={point['epsilon']:.2f} accuracy {point['accuracy']:.4f} (cost {point['cost_pts']:.2f} pts; "
              f"target <= {TARGET_COST_PTS:g}: {'met' if point['meets_cost'] else 'NOT met'})")
    print(f"written to {write_result('dp', result)}")


if __name__ == "__main__":
    main()
