"""The learning half of ``fbci demo``: federated rounds on chain, then IDS alerts and a prediction.

Each hospital is a thread running the real training client
(``client.fl.train.train_rounds``) against its own validator's JSON-RPC, with
its own key and its own share of the data; nothing but signed, clipped,
quantized deltas reaches the chain. Accuracies are computed here, on the
held-out test set, from the global model versions read back from the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from core.crypto import PrivateKey
from client.fl.hospital import Progress
from client.fl.data import breast_cancer_split
from client.fl.model_metrics import accuracy
from client.fl.realdata import centralised_accuracy
from ids.flows import HOSPITAL_PROFILES, generate_flows
from ids.vitals import news2_scores
from client.session import ChainSession
from client.fl.train import DEFAULTS, describe_classes, local_data, train_rounds
from client.ids_watch import reporter_name, watch, with_attack_rate
from client.predict import explain_text, generated_observations, load_model

Say = Callable[[str], None]


def _settings(dataset: str) -> dict[str, Any]:
    """The training settings the data set's published figures were measured with."""
    epochs, lr, batch_size = DEFAULTS[dataset]
    return {"epochs": epochs, "lr": lr, "batch_size": batch_size}


def train_everywhere(urls: Sequence[str], keys: Sequence[PrivateKey], model_id: str,
                     data: Sequence[tuple[Any, Any]], rounds: int, on_round: Callable[[int, int], None],
                     **train: Any) -> None:
    """All hospitals take part in ``rounds`` rounds at once; ``on_round(round, version)`` as each closes."""
    def progress(p: Progress) -> None:
        if p.stage == "closed" and p.detail["new_version"] is not None:
            on_round(p.round, p.detail["new_version"])

    with ThreadPoolExecutor(len(keys)) as pool:
        jobs = [pool.submit(train_rounds, urls[i], keys[i], model_id, x, y, rounds,
                            progress=progress if i == 0 else None, seed=i, **train)
                for i, (x, y) in enumerate(data)]
        for job in jobs:
            job.result()


def breast_cancer_rounds(urls: Sequence[str], keys: Sequence[PrivateKey], rounds: int, say: Say) -> None:
    split = breast_cancer_split(len(keys), alpha=0.5, seed=0)
    sizes = ", ".join(f"{len(y)} ({describe_classes(y, split.class_names)})" for _, y in split.hospitals)
    say(f"{len(keys)} hospitals hold {sizes} patients; {len(split.y_test)} held-out patients for testing")
    with ChainSession(urls[0]) as session:
        spec = session.spec("breast_cancer")

        def show(rnd: int, version: int) -> None:
            mv, weights = session.model_weights("breast_cancer", version)
            acc = accuracy(spec, weights, split.x_test, split.y_test)
            say(f"  round {rnd:>2} closed at height {mv.height:>4}: global model v{version} "
                f"(hash {mv.hash.hex()[:12]}), test accuracy {100 * acc:5.1f}%")

        train_everywhere(urls, keys, "breast_cancer", split.hospitals, rounds, show)
    say(f"a centralised model on the pooled data reaches {100 * centralised_accuracy(split, 0):.1f}% "
        "(the same model family, for comparison)")
    hashes = set()
    for url in urls:
        with ChainSession(url) as session:
            hashes.add(session.model_version("breast_cancer").hash.hex())
    say(f"every validator holds the same global model: {len(hashes) == 1} ({hashes.pop()[:16]}...)")


def intrusion_detection(urls: Sequence[str], keys: Sequence[PrivateKey], gateway: PrivateKey, rounds: int,
                        say: Say) -> None:
    data = [local_data("iomt", i, len(keys), samples=3000) for i in range(len(keys))]
    say(f"hospitals train the IoMT intrusion classifier on their own device traffic ({rounds} rounds)")
    train_everywhere(urls, keys, "iomt_ids", data, rounds,
                     lambda rnd, version: say(f"  round {rnd} closed: iomt_ids v{version}"), **_settings("iomt"))
    profile = with_attack_rate(HOSPITAL_PROFILES[0], 0.25)
    records = generate_flows(profile, 1500, np.random.default_rng(7))
    truth: dict[str, int] = {}
    for r in records:
        truth[r.label] = truth.get(r.label, 0) + 1
    say(f"an attack on {profile.name}'s device network: {len(records)} flows, ground truth {truth}")
    with ChainSession(urls[0], gateway) as session:
        summary = watch(session, records)
        reporter = reporter_name(session)
    say(f"the gateway scored {summary.records} flows with {summary.scored_with}, flagged "
        f"{summary.flagged}, and after per-device/window de-duplication submitted {summary.submitted} alerts: "
        f"{summary.by_class}")
    counts = []
    for url in urls:
        with ChainSession(url) as session:
            page = session.run(lambda c: c.alerts_query(hospital=reporter, limit=500))
            counts.append(len(page.alerts))
    say(f"alerts committed, as seen on each validator: {counts} (reported by {reporter}, the signing gateway)")


def prediction(urls: Sequence[str], keys: Sequence[PrivateKey], rounds: int, say: Say) -> None:
    data = [local_data("vitals", i, len(keys), samples=60) for i in range(len(keys))]
    say(f"hospitals train the deterioration model on their patients' vital-sign windows ({rounds} rounds)")
    train_everywhere(urls, keys, "deterioration", data, rounds,
                     lambda rnd, version: say(f"  round {rnd} closed: deterioration v{version}"), **_settings("vitals"))
    obs, info = generated_observations(11)
    with ChainSession(urls[0]) as session:
        model, version = load_model(session, "deterioration", None)
    say(f"patient {info['patient']} at hour {info['at_h']:.0f} (deterioration onset at hour {info['onset_h']}):")
    say(explain_text(model.score_recent(obs), int(news2_scores(obs[-1:])[0]), "deterioration", version))
