"""The intrusion-detection step of ``fbci demo``: train on chain, watch an attack, and say how good the watch was.

"Flagged N" alone says nothing about a detector, so the flows the gateway
scored are scored again here, in the same order, by the same classifier
version from chain (``client.ids_watch.load_classifier`` and the gateway's own
``Gateway.classify``), and set against the generator's ground truth:
precision (of the flows flagged, how many were attacks) and recall (of the
attacks, how many were flagged), overall and per class. The alerts then shown
are read back from every validator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from core.crypto import PrivateKey
from ids.detection_metrics import per_class
from ids.features import flow_features, labels
from ids.flows import HOSPITAL_PROFILES, generate_flows
from ids.gateway import Gateway
from ids.record import ATTACK_CLASSES, FlowRecord
from client.fl.train import local_data
from client.ids_watch import load_classifier, pseudonym_secret, reporter_name, watch, with_attack_rate
from client.session import ChainSession
from client.text import indent, percent, table
from client.views import alerts_view
from devnet.demo_learning import Say, failed_rounds_note, round_printer, settings, train_everywhere

FLOWS = 1500
ATTACK_RATE = 0.25


def replay_verdicts(session: ChainSession, gateway_key: PrivateKey, records: Sequence[FlowRecord]) -> np.ndarray:
    """The class the gateway gave each record (before de-duplication), as indices into ``ATTACK_CLASSES``."""
    classifier, version = load_classifier(session)
    gateway = Gateway(hospital="replay", secret=pseudonym_secret(gateway_key), classifier=classifier,
                      model_version=version)
    index = {c: i for i, c in enumerate(ATTACK_CLASSES)}
    return np.array([index[gateway.classify(r, flow_features(r, gateway.context))[0]] for r in records],
                    dtype=np.int64)


def intrusion_detection(urls: Sequence[str], keys: Sequence[PrivateKey], gateway_key: PrivateKey, rounds: int,
                        say: Say) -> None:
    data = [local_data("iomt", i, len(keys), samples=3000) for i in range(len(keys))]
    say(f"hospitals train the IoMT intrusion classifier on their own device traffic ({rounds} rounds)")
    with ChainSession(urls[0], keys[0]) as session:  # models and rounds are private reads
        train_everywhere(urls, keys, "iomt_ids", data, rounds, round_printer(say, session, "iomt_ids"),
                         **settings("iomt"))
        if (note := failed_rounds_note(session, "iomt_ids")) is not None:
            say(note)
    profile = with_attack_rate(HOSPITAL_PROFILES[0], ATTACK_RATE)
    records = generate_flows(profile, FLOWS, np.random.default_rng(7))
    say(f"an attack on {profile.name}'s device network: {len(records)} flows, {percent(ATTACK_RATE)} of them attacks")
    with ChainSession(urls[0], gateway_key) as session:
        summary = watch(session, records)
        reporter = reporter_name(session)
        predicted = replay_verdicts(session, gateway_key, records)
    truth = labels(records, ATTACK_CLASSES)
    attack, flagged = truth != 0, predicted != 0
    precision = float((attack & flagged).sum() / max(flagged.sum(), 1))
    recall = float((attack & flagged).sum() / max(attack.sum(), 1))
    say(f"the gateway scored {summary.records} flows with {summary.scored_with} and flagged {summary.flagged}: "
        f"precision {percent(precision)} (flagged flows that were attacks), recall {percent(recall)} "
        "(attacks that were flagged)")
    metrics = per_class(truth, predicted, ATTACK_CLASSES)
    true_counts, flagged_as = Counter(truth.tolist()), Counter(predicted.tolist())
    say(table(("TRUE CLASS", "FLOWS", "CLASSIFIED AS", "PRECISION", "RECALL", "ALERTS SENT"),
              [(c, true_counts[i], flagged_as[i], percent(metrics[c].precision), percent(metrics[c].recall),
                summary.by_class.get(c, "-" if i == 0 else 0)) for i, c in enumerate(ATTACK_CLASSES)], indent="  "))
    say(f"alerts are de-duplicated per device, class and 60-second window: {summary.flagged} flagged flows became "
        f"{summary.submitted} signed alert transactions, {summary.committed} committed")
    rows = []
    for url in urls:
        with ChainSession(url, keys[0]) as session:
            page = session.run(lambda c: c.alerts_query(hospital=reporter, limit=500))
            rows.append((session.run(lambda c: c.status()).validator, len(page.alerts),
                         ", ".join(f"{c} {n}" for c, n in sorted(Counter(a.alert_class for a in page.alerts).items()))))
    say(f"alerts committed, as each validator answers 'alerts_query' (reported by {reporter}, the signing gateway):")
    say(table(("VALIDATOR", "ALERTS", "BY CLASS"), rows, indent="  "))
    with ChainSession(urls[0], keys[0]) as session:
        latest = session.run(lambda c: c.alerts_query(hospital=reporter, min_severity=3, limit=5))
    say("the first high-severity ones, as 'fbci ids alerts --min-severity high' shows them:")
    say(indent(alerts_view(latest)))
