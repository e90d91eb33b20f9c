"""``fbci ids watch``: a hospital gateway scoring IoMT flows with the chain's IDS model and posting alerts.

The model is the ``iomt_ids`` global version committed on chain, read over
JSON-RPC and run with numpy (``ids.classifier``); version 0 is genesis's
untrained, hash-derived random start (``fl_contracts.initial``), so before the
first round closes the training-free rules decide, as ``ids.gateway``
documents, and the summary's ``scored_with`` says which of the two scored.
``ids.gateway.Gateway`` keeps one alert per device, class and window, so the
number of transactions is bounded by devices x classes x windows however long
an attack lasts. Alerts are signed with the gateway's
key and submitted without waiting for each commit (consecutive nonces keep
their order); at the end every submitted alert is waited for and counted as
committed, or as already on chain (the contract's own dedup, e.g. when the
same export is replayed). Device ids are pseudonymised with a secret derived
from the gateway key, so the same device keeps the same pseudonym across
runs and nobody without the key can link it to a device. The IoMT device
types are the ones the chain's genesis declares (``app_state.device_types``,
``ids.devices``): records are parsed, generated, featurised and checked by
the rules against that catalog, so a record of an undeclared type is refused
with ``unknown_device_type`` instead of being scored as something else.

No torch: this runs on a gateway box.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from core.crypto import PrivateKey
from core.errors import ContractRejected, InvalidInput
from core.layers import check_chain
from core.hashing import sha256
from ids.alerts import TX_KIND, AlertPayload
from ids.classifier import FlowClassifier
from ids.context import DeviceContext
from ids.devices import IDS_MODEL_ID, DeviceCatalog, devices_of
from ids.flows import HOSPITAL_PROFILES, HospitalProfile, generate_flows, read_flows_csv, read_flows_jsonl
from ids.gateway import Gateway
from ids.record import ATTACK_CLASSES, FlowRecord
from genesis.schema import GenesisDoc
from client.light import home_genesis
from client.session import ChainSession, load_client_key, resolve_rpc_url

MODEL_ID = IDS_MODEL_ID
PSEUDONYM_DOMAIN = b"fbci/ids/device-pseudonym/1"
RULES = "rules"  # WatchSummary.scored_with when the training-free rules decided


def pseudonym_secret(key: PrivateKey) -> bytes:
    """A secret only the gateway key's holder can compute: SHA-256 of its (deterministic) Ed25519 signature."""
    return sha256(key.sign("fbci", "ids.pseudonym", PSEUDONYM_DOMAIN))


def load_classifier(session: ChainSession, version: int | None = None) -> tuple[FlowClassifier | None, int]:
    """The chain's IDS model and its version; ``(None, 0)`` at version 0, which the rules score.

    Version 0 is genesis's random start (nonzero, never trained), not a model
    worth scoring with, so it always means the rules.
    """
    mv, weights = session.model_weights(MODEL_ID, version)
    if mv.version == 0:
        return None, 0
    layers = session.spec(MODEL_ID).network_layers  # any declared stack: depth, dropout, layer norm, temporal conv
    return FlowClassifier.from_weights(weights, n_features=check_chain(layers)[0], layers=layers), mv.version


@dataclass
class WatchSummary:
    records: int = 0
    flagged: int = 0
    alerts: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    submitted: int = 0
    committed: int = 0
    already_on_chain: int = 0
    rejected: int = 0
    model_version: int = 0
    scored_with: str = RULES  # what scored the records: "rules" or "iomt_ids v<N>"
    reporter: str = ""  # the gateway account the alerts are signed and named by
    alert_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def with_attack_rate(profile: HospitalProfile, rate: float) -> HospitalProfile:
    """The profile with ``rate`` of its records attacks, in the profile's own proportions between attack classes."""
    if not 0.0 <= rate <= 1.0:
        raise InvalidInput(f"--attack-rate must be between 0 and 1, got {rate}")
    attacks = {c: profile.class_mix[c] for c in ATTACK_CLASSES[1:]}
    total = sum(attacks.values())
    mix = {"normal": 1.0 - rate, **{c: rate * w / total for c, w in attacks.items()}}
    return HospitalProfile(**{**asdict(profile), "class_mix": mix})


def profile_named(name: str) -> HospitalProfile:
    for profile in HOSPITAL_PROFILES:
        if profile.name == name:
            return profile
    raise InvalidInput(f"--profile: unknown hospital profile {name!r}; choose one of "
                       f"{', '.join(p.name for p in HOSPITAL_PROFILES)}")


def _count_refusal(summary: WatchSummary, exc: ContractRejected) -> None:
    if "already on chain" in exc.message:
        summary.already_on_chain += 1
    else:
        summary.rejected += 1
        summary.errors.append(exc.message)


def reporter_name(session: ChainSession) -> str:
    """The gateway key's account name on chain: the chain accepts alerts only under the signer's own name."""
    key = session.key
    if key is None:
        raise InvalidInput("ids watch needs a session with the gateway key")
    name = session.run(lambda c: c.account_get(key.public_key.raw)).name
    if name is None:
        raise InvalidInput(f"--key: {key.public_key.hex()} is not a registered account on this chain")
    return name


def chain_devices(session: ChainSession, genesis: GenesisDoc | None = None) -> DeviceCatalog:
    """The device types the chain declares: from ``genesis`` (the home's, the light client's root of
    trust) when given, else from the genesis the session's validator serves."""
    doc = genesis if genesis is not None else session.run(lambda c: c.genesis()).genesis
    return devices_of(doc.app_state)


def watch(session: ChainSession, records: Iterable[FlowRecord], *, model_version: int | None = None,
          window_ms: int = 60_000, on_alert: Callable[[AlertPayload], None] | None = None,
          commit_timeout_s: float = 60.0, devices: DeviceCatalog | None = None) -> WatchSummary:
    """Score ``records``, submit each alert under the gateway account's name, then wait for all of them.

    ``devices``: the chain's declared device types (default: read from the genesis the session serves)."""
    hospital = reporter_name(session)
    assert session.key is not None  # reporter_name refused a session without one
    classifier, version = load_classifier(session, model_version)
    gateway = Gateway(hospital=hospital, secret=pseudonym_secret(session.key), classifier=classifier,
                      model_version=version, window_ms=window_ms,
                      context=DeviceContext(devices=devices if devices is not None else chain_devices(session)))
    summary = WatchSummary(model_version=version, reporter=hospital,
                           scored_with=RULES if classifier is None else f"{MODEL_ID} v{version}")
    by_class: Counter[str] = Counter()
    pending: list[bytes] = []
    for record in records:
        for alert in gateway.process(record):
            by_class[alert.alert_class] += 1
            if on_alert is not None:
                on_alert(alert)
            try:
                pending.append(session.submit(TX_KIND, alert.to_payload()))
            except ContractRejected as exc:  # refused at admission (CheckTx)
                _count_refusal(summary, exc)
    for tx_hash in pending:
        try:
            doc = session.wait_committed(tx_hash, commit_timeout_s)
            summary.committed += 1
            summary.alert_ids.append(int(doc.receipt.result.get("alert_id", 0)))
        except ContractRejected as exc:  # refused in its block (another alert for it got there first)
            _count_refusal(summary, exc)
    summary.records, summary.flagged, summary.alerts = gateway.stats.scored, gateway.stats.flagged, gateway.stats.emitted
    summary.by_class = dict(sorted(by_class.items()))
    summary.submitted = len(pending)
    return summary


def _records(args: argparse.Namespace, devices: DeviceCatalog) -> Iterator[FlowRecord]:
    if args.csv:
        return read_flows_csv(args.csv, devices)
    if args.jsonl:
        return read_flows_jsonl(args.jsonl, devices)
    if args.stdin:
        return read_flows_jsonl(sys.stdin, devices)
    profile = profile_named(args.profile)
    if args.attack_rate is not None:
        profile = with_attack_rate(profile, args.attack_rate)
    return iter(generate_flows(profile, args.generate, np.random.default_rng([args.seed, 7919]), devices))


def _version(text: str) -> int | None:
    if text == "latest":
        return None
    if not text.isdigit():
        raise InvalidInput(f"--model-version: {text!r} must be 'latest' or a version number")
    return int(text)


def main(args: argparse.Namespace) -> int:
    url = resolve_rpc_url(args.rpc, args.home)
    key = load_client_key(args.key, args.home)
    version = _version(args.model_version)
    genesis = home_genesis(args.home)
    with ChainSession(url, key, genesis=genesis) as session:
        devices = chain_devices(session, genesis)
        summary = watch(session, _records(args, devices), model_version=version, window_ms=args.window_ms,
                        devices=devices)
    if args.json:
        print(json.dumps(asdict(summary), indent=2))
        return 0 if not summary.rejected else 1
    model = (summary.scored_with if summary.scored_with != RULES
             else f"{RULES} ({MODEL_ID} v0 is genesis's untrained start)")
    print(f"scored {summary.records} record(s) with {model}: {summary.flagged} flagged, "
          f"{summary.alerts} alert(s) after per-device/window dedup")
    for cls, n in summary.by_class.items():
        print(f"  {cls:<16} {n}")
    print(f"committed {summary.committed} of {summary.submitted} alert tx(s)"
          + (f"; {summary.already_on_chain} already on chain" if summary.already_on_chain else "")
          + (f"; {summary.rejected} rejected" if summary.rejected else ""))
    for message in summary.errors[:5]:
        print(f"  rejected: {message}", file=sys.stderr)
    return 0 if not summary.rejected else 1

