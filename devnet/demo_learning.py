"""The learning half of ``fbci demo``: federated rounds on chain, and a deterioration prediction a nurse can act on.

Each hospital is a thread running the real training client
(``client.fl.train.train_rounds``) against its own validator's JSON-RPC, with
its own key and its own share of the data; nothing but signed, clipped,
quantized deltas reaches the chain. Accuracies are computed here, on the
held-out test set, from the global model versions read back from the chain.
The prediction is judged against an alarm threshold fixed on the training
hospitals only (``ids.evaluation.equal_workload_threshold``: the model alarms
as often as NEWS2 >= 3 does there), so "would alarm" and "missed" mean what
they would on a ward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import time
from pathlib import Path

from core.crypto import PrivateKey
from core.errors import Timeout
from genesis.home import HomePaths
from client import consent
from client.fl.consent import load_or_create_secret, pseudonyms, record_numbers
from client.fl.hospital import Progress
from client.fl.data import breast_cancer_split
from client.fl.model_metrics import accuracy
from client.fl.realdata import centralised_accuracy
from ids.evaluation import PredictionReport, equal_workload_threshold, evaluate_news2_baseline, evaluate_predictor, vital_split
from ids.vitals import news2_scores
from client.session import ChainSession
from client.fl.train import DEFAULTS, describe_classes, train_rounds
from client.predict import explain_text, generated_observations, load_model
from client.text import indent, percent, table
from client.views import rounds_view

Say = Callable[[str], None]
ROUND_WAIT_S = 120.0
DECLINE_EVERY = 20
"""In the demo every 20th breast-cancer patient declines to let the model train on their record."""
PATIENTS_PER_HOSPITAL = 60
TEST_PATIENTS = 60
SHOWN_PATIENTS = (11, 5, 23, 1, 4, 7)
"""Generated patients shown on the ward list: three who deteriorate later in their stay, three who do not."""


def settings(dataset: str) -> dict[str, Any]:
    """The training settings the data set's published figures were measured with."""
    epochs, lr, batch_size = DEFAULTS[dataset]
    return {"epochs": epochs, "lr": lr, "batch_size": batch_size}


def train_everywhere(urls: Sequence[str], keys: Sequence[PrivateKey], model_id: str,
                     data: Sequence[tuple[Any, Any]], rounds: int, on_round: Callable[[int, int], None],
                     patients: Sequence[list[bytes]] | None = None, **train: Any) -> None:
    """All hospitals take part in ``rounds`` rounds at once; ``on_round(round, version)`` as each closes.
    ``patients``: each hospital's row pseudonyms, for a model that requires consent."""
    def progress(p: Progress) -> None:
        if p.stage == "closed" and p.detail["new_version"] is not None:
            on_round(p.round, p.detail["new_version"])

    with ThreadPoolExecutor(len(keys)) as pool:
        jobs = [pool.submit(train_rounds, urls[i], keys[i], model_id, x, y, rounds,
                            progress=progress if i == 0 else None, seed=i,
                            patients=None if patients is None else patients[i], **train)
                for i, (x, y) in enumerate(data)]
        for job in jobs:
            job.result()


def explain_rounds(say: Say, hospitals: int) -> None:
    say("How rounds are numbered: the chain opens round 1 of every model at genesis, on version v0. A round")
    say(f"closes when all {hospitals} hospitals have submitted, or at its deadline (a fixed number of blocks after it")
    say("opened). With enough updates it aggregates them into the next version; with too few it fails and the")
    say("next round starts again from the same version. Round numbers therefore count rounds opened and run")
    say("ahead of versions whenever a round failed; 'fbci fl rounds' lists every one with its outcome.")


def round_printer(say: Say, session: ChainSession, model_id: str,
                  extra: Callable[[int, Any], str] | None = None) -> Callable[[int, int], None]:
    """A row per closed round, as it closes: round, height, version, model hash (and ``extra``'s column)."""
    say(f"  {'ROUND':>5}  {'CLOSED AT':>9}  {'VERSION':<7}  " + ("MODEL HASH    TEST ACCURACY" if extra else "MODEL HASH"))

    def show(rnd: int, version: int) -> None:
        mv = session.model_version(model_id, version)
        more = f"  {extra(version, mv)}" if extra else ""
        say(f"  {rnd:>5}  {mv.height:>9}  {'v' + str(version):<7}  {mv.hash.hex()[:12]}{more}")
    return show


def failed_rounds_note(session: ChainSession, model_id: str) -> str | None:
    """Why a model's first version came from a round after round 1, from the chain's round records."""
    failed = [r for r in session.rounds(model_id) if r.status == "failed"]
    if not failed:
        return None
    numbers = f"round {failed[0].round}" if len(failed) == 1 else f"rounds {failed[0].round}-{failed[-1].round}"
    return (f"({numbers} of {model_id} failed at their deadlines while the hospitals trained other models: "
            f"{failed[-1].reason}; the version did not move)")


def record_consent(urls: Sequence[str], keys: Sequence[PrivateKey], homes: Sequence[Path], sizes: Sequence[int],
                   model_id: str, say: Say) -> list[list[bytes]]:
    """Each hospital records its patients' decisions on chain (``consent.set``, as custodian) before they
    train; returns every row's pseudonym per hospital, which the training client checks at each round's
    consent snapshot. Waits for a round that opened after the last grant, since a round's consent is fixed
    when it opens."""
    rows = [pseudonyms(record_numbers("breast_cancer", i, n), load_or_create_secret(HomePaths(home).keys_dir))
            for i, (home, n) in enumerate(zip(homes, sizes))]

    def grant(i: int) -> int:
        with ChainSession(urls[i], keys[i]) as session:
            return consent.grant_many(session, [p for k, p in enumerate(rows[i]) if k % DECLINE_EVERY != 1],
                                      f"train:{model_id}")

    with ThreadPoolExecutor(len(keys)) as pool:
        granted = max(pool.map(grant, range(len(keys))))
    say(f"{model_id} requires consent (genesis app_state.consent.required_for): each hospital records its "
        f"patients' decisions as FHIR Consent on chain; every {DECLINE_EVERY}th declines:")
    say(table(("HOSPITAL", "PATIENTS", "PERMIT", "NO CONSENT"),
              [(f"hospital{i}", len(r), len(r) - len(r[1::DECLINE_EVERY]), len(r[1::DECLINE_EVERY]))
               for i, r in enumerate(rows)], indent="  "))
    deadline = time.monotonic() + ROUND_WAIT_S
    with ChainSession(urls[0], keys[0]) as session:
        while session.rounds(model_id)[-1].opened_height < granted:
            if time.monotonic() > deadline:
                raise Timeout(f"no {model_id} round opened after height {granted} within {ROUND_WAIT_S:g} s")
            time.sleep(0.5)  # polling the chain for the round after the grants; rounds open on block heights
    say(f"  (granted by height {granted}; only rounds opened from then on see them: a round's consent is fixed "
        "when it opens. Only the pseudonyms go on chain, never a record number.)")
    return rows


def breast_cancer_rounds(urls: Sequence[str], keys: Sequence[PrivateKey], homes: Sequence[Path], rounds: int,
                         say: Say) -> None:
    split = breast_cancer_split(len(keys), alpha=0.5, seed=0)
    shares = table(("HOSPITAL", "PATIENTS", "DIAGNOSES"), [(f"hospital{i}", len(y), describe_classes(y, split.class_names))
                                                         for i, (_, y) in enumerate(split.hospitals)], indent="  ")
    say(f"{len(keys)} hospitals train a diagnosis model on their own patients; {len(split.y_test)} held-out "
        f"patients test each global version:\n{shares}")
    explain_rounds(say, len(keys))
    patients = record_consent(urls, keys, homes, [len(y) for _, y in split.hospitals], "breast_cancer", say)
    with ChainSession(urls[0], keys[0]) as session:  # models and rounds are private reads
        spec = session.spec("breast_cancer")

        def test_accuracy(version: int, mv: Any) -> str:
            _, weights = session.model_weights("breast_cancer", version)
            return f"{100 * accuracy(spec, weights, split.x_test, split.y_test):5.1f}%"

        train_everywhere(urls, keys, "breast_cancer", split.hospitals, rounds,
                         round_printer(say, session, "breast_cancer", test_accuracy), patients)
        say("the chain's own record of the last rounds (fbci fl rounds --model breast_cancer --last 3):")
        say(indent(rounds_view(session.rounds("breast_cancer")[-3:], {})))
    say(f"a centralised model on the pooled data reaches {100 * centralised_accuracy(split, 0):.1f}% "
        "(the same model family, for comparison)")
    hashes = set()
    for url in urls:
        with ChainSession(url, keys[0]) as session:
            hashes.add(session.model_version("breast_cancer").hash.hex())
    say(f"every validator holds the same global model: {len(hashes) == 1} ({hashes.pop()[:16]}...)")


def _report_row(name: str, r: PredictionReport) -> tuple[str, ...]:
    return (name, percent(r.sensitivity), percent(r.specificity), percent(r.onsets_warned),
            f"{r.median_lead_time_h:.1f} h")


def _verdict(alarm: bool, onset_h: float | None) -> str:
    if onset_h is not None:
        return "would alarm: caught" if alarm else "MISSED"
    return "false alarm" if alarm else "quiet, rightly"


def prediction(urls: Sequence[str], keys: Sequence[PrivateKey], rounds: int, say: Say) -> None:
    split = vital_split(len(keys), PATIENTS_PER_HOSPITAL, TEST_PATIENTS, seed=0)  # the data 'fl train' would use
    say(f"hospitals train the deterioration model on their patients' 4-hour vital-sign windows ({rounds} rounds)")
    with ChainSession(urls[0], keys[0]) as session:
        train_everywhere(urls, keys, "deterioration", split.train, rounds, round_printer(say, session, "deterioration"),
                         **settings("vitals"))
        model, version = load_model(session, "deterioration", None)
        if (note := failed_rounds_note(session, "deterioration")) is not None:
            say(note)
    threshold = equal_workload_threshold(model, split)
    say(f"alarm threshold {threshold:.3f}: the score at which deterioration v{version} alarms as often as NEWS2 >= 3 "
        "does on the training hospitals (an urgent-review workload a ward already carries)")
    say(f"on {len(split.test_series)} patients no hospital trained on, each window scored against it:")
    say(table(("ALARM RULE", "SENSITIVITY", "SPECIFICITY", "ONSETS WARNED", "MEDIAN LEAD"),
              [_report_row(f"model >= {threshold:.3f}", evaluate_predictor(model, split)),
               _report_row("NEWS2 >= 3 now", evaluate_news2_baseline(split))], indent="  "))
    say("  (sensitivity: share of windows followed by NEWS2 >= 5 within 6 h that alarmed; lead: how early)")
    rows = []
    for seed in SHOWN_PATIENTS:
        obs, info = generated_observations(seed)
        p = model.score_recent(obs).probability
        onset = info["onset_h"]
        outcome = "stays below 5" if onset is None else f"NEWS2 >= 5 at {onset:g} h ({onset - info['at_h']:g} h later)"
        rows.append((info["patient"], f"{info['at_h']:g} h", int(news2_scores(obs[-1:])[0]), f"{p:.3f}",
                     "ALARM" if p >= threshold else "-", outcome, _verdict(p >= threshold, onset)))
    say("a ward list scored with the on-chain model (patients' vitals stay at the hospital; only the model is on chain):")
    say(table(("PATIENT", "AT", "NEWS2 NOW", "P(NEWS2>=5 IN 6 H)", "ALARM", "WHAT HAPPENED", "VERDICT"), rows,
              indent="  "))
    obs, info = generated_observations(SHOWN_PATIENTS[0])
    say(f"why {info['patient']} scored as it did at {info['at_h']:g} h:")
    say(explain_text(model.score_recent(obs), int(news2_scores(obs[-1:])[0]), "deterioration", version))
