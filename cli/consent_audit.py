"""``fbci consent ...`` and ``fbci audit ...``: a patient's consent, and the audit trail, from the command line.

Registered by :func:`add_commands` from ``cli/main.py``; the work is in
``client/consent.py`` and ``client/audit.py``, this module only parses and
prints. A record number (``--mrn``) never leaves this machine: it is turned
into the patient's pseudonym here, under the hospital's secret in
``HOME/keys`` (``client.fl.consent``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import InvalidInput

_F = argparse.RawDescriptionHelpFormatter


def _pseudonym(args: argparse.Namespace) -> bytes:
    from client.fl.consent import load_or_create_secret
    from consent.record import pseudonym
    from genesis.home import HomePaths

    if args.patient is not None:
        try:
            raw = bytes.fromhex(args.patient)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise InvalidInput("--patient: a pseudonym is 64 hex digits (fbci consent pseudonym --mrn prints it)")
        return raw
    if args.home is None:
        raise InvalidInput("--mrn needs --home: the hospital's pseudonym secret is in HOME/keys")
    return pseudonym(args.mrn, load_or_create_secret(HomePaths(Path(args.home)).keys_dir))


def _session(args: argparse.Namespace, url: str | None = None) -> Any:
    from client.session import ChainSession, load_client_key, resolve_rpc_url

    key = load_client_key(args.key, args.home) if getattr(args, "key", None) else None
    return ChainSession(url or resolve_rpc_url(args.rpc[0] if args.rpc else None, args.home), key)


def _print(value: Any) -> None:
    from core.wire import to_wire

    json.dump(to_wire(value), sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- consent ------------------------------------------------------------------------------------

def consent_pseudonym(args: argparse.Namespace) -> int:
    print(_pseudonym(args).hex())
    return 0


def consent_issue_proxy(args: argparse.Namespace) -> int:
    from client import consent
    from core.crypto import PrivateKey

    out = Path(args.out)
    if out.exists():
        raise InvalidInput(f"--out: {out} already exists")
    patient = _pseudonym(args)
    proxy = PrivateKey.generate()
    with _session(args) as s:
        info = consent.issue_proxy(s, proxy, args.name, patient)
    proxy.save(out)
    print(f"patient proxy {args.name} ({proxy.public_key.hex()}) for patient {patient.hex()} issued at height "
          f"{info.receipt.height}; its key is in {out} (give it to the patient or their representative)")
    return 0


def consent_grant(args: argparse.Namespace) -> int:
    from client import consent

    # several --mrn: the custodian hospital records each patient's decision, one transaction each
    patients = [_pseudonym(argparse.Namespace(**{**vars(args), "mrn": mrn})) for mrn in args.mrn or [None]]
    with _session(args) as s:
        for patient in patients:
            info = consent.grant(s, patient, args.purpose, decision=args.decision, start=args.period_from,
                                 end=args.period_to)
            print(f"{args.decision} {args.purpose} for patient {patient.hex()[:16]}… recorded at height "
                  f"{info.receipt.height} (event {info.receipt.result.get('seq')})")
    return 0


def consent_revoke(args: argparse.Namespace) -> int:
    from client import consent

    patient = _pseudonym(args)
    with _session(args) as s:
        info = consent.revoke(s, patient, args.purpose)
    marked = info.receipt.result.get("rounds_marked", 0)
    print(f"revoked {args.purpose} for patient {patient.hex()[:16]}… at height {info.receipt.height}; it takes "
          f"effect from the next round; {marked} past round(s) that used the patient are now marked")
    return 0


def consent_history(args: argparse.Namespace) -> int:
    from client import consent

    patient = _pseudonym(args)
    with _session(args) as s:
        history = consent.history(s, patient)
    if args.json:
        _print(history)
        return 0
    print(f"patient {patient.hex()}  custodian {history.custodian.hex()[:16] if history.custodian else '-'}…")
    for e in history.events:
        what = (f"{e.record.decision} {e.purpose} heights {e.record.period.start}.."
                f"{'' if e.record.period.end is None else e.record.period.end}" if e.record else f"revoke {e.purpose}")
        print(f"  height {e.height:>6}  {what}  by {e.signer.hex()[:16]}…")
    for u in history.uses:
        print(f"  height {u.height:>6}  used by {u.model_id} round {u.round} (on version {u.base_version}) "
              f"from hospital {u.hospital.hex()[:16]}…")
    if not history.uses:
        print("  no round used this patient")
    return 0


def consent_provenance(args: argparse.Namespace) -> int:
    from client import consent

    with _session(args) as s:
        tainted = consent.provenance(s, args.model)
        rounds = {r.round: r for r in s.rounds(args.model)}
    for t in tainted:
        made = rounds[t.round].new_version if t.round in rounds else None
        print(f"{args.model} round {t.round}: {t.revoked_patients} patient(s) withdrew consent (first at height "
              f"{t.first_withdrawn_height}); " + (f"version {made} and every later version derive from it"
                                                  if made is not None else "the round made no version"))
    if not tainted:
        print(f"no round of {args.model} used a patient who later withdrew consent")
    return 0


# --- audit --------------------------------------------------------------------------------------

def _urls(args: argparse.Namespace) -> list[str]:
    from client.session import resolve_rpc_url
    from genesis.home import load_config

    if args.net is not None:
        homes = sorted((p for p in Path(args.net).glob("node*") if (p / "config" / "config.json").is_file()),
                       key=lambda p: (len(p.name), p.name))
        if not homes:
            raise InvalidInput(f"--net {args.net}: no node<i>/config/config.json homes in it")
        return [load_config(h).rpc_url() for h in homes]
    return list(args.rpc) if args.rpc else [resolve_rpc_url(None, args.home)]


def _filters(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from core.audit import AuditEventsParams

    try:
        return AuditEventsParams.model_validate_json(json.dumps(
            {"model_id": args.model, "patient": args.patient, "hospital": args.hospital, "actor": args.actor,
             "since_height": args.since, "limit": args.limit}))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"--{str(first['loc'][0]).replace('_height', '').replace('_id', '')}: "
                           f"{first['msg']}") from None


def audit_query(args: argparse.Namespace) -> int:
    from client.audit import query_events

    from core.errors import FbciError

    filters = _filters(args)
    rows: list[Any] = []
    unreachable = 0
    for url in _urls(args):
        try:
            with _session(args, url) as s:
                page = query_events(s, filters)
        except FbciError as exc:  # one validator down must not hide the others' trails
            unreachable += 1
            print(f"{url}: error[{exc.code} {exc.reason}]: {exc.message}", file=sys.stderr)
            continue
        gap = page.next_seq - page.anchored_to
        print(f"{page.observer}: {len(page.events)} event(s); {page.next_seq} recorded, anchored below "
              f"{page.anchored_to} (last anchor at height {page.last_anchor_height})"
              + (f"; GAP: {gap} event(s) not anchored" if gap else ""), file=sys.stderr)
        rows += page.events
    if args.json:
        _print(rows)
        return 1 if unreachable else 0
    for e in rows:
        who = e.agent_name or (e.agent.hex()[:16] + "…" if e.agent else "anonymous")
        what = " ".join(f"{k}={str(v)[:16]}" for k, v in sorted(e.entity.items()))
        print(f"{e.observer} #{e.seq:<5} height {e.height:>6}  {e.action} {e.entity_type:<18} {what:<40} by {who:<12}"
              f" outcome {e.outcome} {e.outcome_reason}")
    return 1 if unreachable else 0


def audit_verify(args: argparse.Namespace) -> int:
    from client.audit import anchor_trust, fetch_proof, query_events, verify_event
    from genesis.home import HomePaths
    from genesis.schema import load_genesis

    if args.genesis is None and args.home is None and args.net is None:
        raise InvalidInput("audit verify trusts only genesis (its validators, and the changes they certify): pass --genesis FILE (or --home/--net)")
    genesis = Path(args.genesis) if args.genesis else (
        Path(args.net) / "genesis.json" if args.net else HomePaths(Path(args.home)).genesis)
    headers = anchor_trust(load_genesis(genesis))
    filters = _filters(args)
    failed = total = pending = 0
    certified: dict[bytes, int] = {}  # anchors already checked against their certified blocks
    for url in _urls(args):
        with _session(args, url) as s:
            for event in query_events(s, filters).events:
                proof = fetch_proof(s, event.seq)
                if proof.anchor is None and proof.event.seq == event.seq:
                    pending += 1
                    print(f"{event.observer} #{event.seq:<5} wait not anchored yet")
                    continue
                result = verify_event(s, proof, event.seq, headers, certified)
                total += 1
                failed += not result.ok
                print(f"{result.observer} #{result.seq:<5} {'ok  ' if result.ok else 'FAIL'} {result.detail}")
    print(f"{total - failed}/{total} anchored event(s) proven against anchors in certified blocks"
          + (f"; {pending} not anchored yet" if pending else ""))
    return 0 if failed == 0 else 1


def _common(p: argparse.ArgumentParser, *, key_help: str) -> None:
    p.add_argument("--home", metavar="DIR", help="home directory: its RPC address, keys/ and pseudonym secret")
    p.add_argument("--rpc", action="append", metavar="URL", help="node RPC URL, http://HOST:PORT (repeatable: the first answers; default: from --home)")
    p.add_argument("--key", required=True, help=key_help)


def _patient(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", metavar="PSEUDONYM", help="the patient's pseudonym, 64 hex digits")
    who.add_argument("--mrn", nargs="+" if many else None, metavar="MRN",
                     help="medical record number" + ("(s)" if many else "") + " (hospital side: hashed here, never sent)")


def add_commands(sub: Any) -> None:
    def add(group: Any, name: str, handler: Any, summary: str) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=summary, description=summary, formatter_class=_F)
        p.set_defaults(handler=handler)
        return p

    consent = sub.add_parser("consent", help="Patients' consent to train models (FHIR Consent on chain).",
                             formatter_class=_F).add_subparsers(dest="consent_command", required=True, metavar="COMMAND")
    p = add(consent, "pseudonym", consent_pseudonym, "Print a patient's pseudonym (HMAC of the MRN under HOME's secret).")
    p.add_argument("--home", required=True, metavar="DIR")
    p.add_argument("--mrn", required=True)
    p.set_defaults(patient=None)
    p = add(consent, "issue-proxy", consent_issue_proxy, "Issue a patient proxy key for one patient (hospital).")
    _common(p, key_help="the hospital's key file or name in HOME/keys")
    _patient(p)
    p.add_argument("--name", required=True, help="account name of the proxy (lower case, e.g. proxy-123)")
    p.add_argument("--out", required=True, metavar="FILE", help="a file: where to write the proxy's new key (mode 0600)")
    for name, handler, summary in (("grant", consent_grant, "Record a permit (or deny) for a purpose."),
                                   ("revoke", consent_revoke, "Revoke the record for a purpose (from the next round).")):
        p = add(consent, name, handler, summary)
        _common(p, key_help="the patient proxy's key, or the custodian hospital's")
        _patient(p, many=name == "grant")
        p.add_argument("--purpose", default="*", help="train:<model_id>, or * for every model (default: *)")
        if name == "grant":
            p.add_argument("--decision", choices=("permit", "deny"), default="permit")
            p.add_argument("--from", dest="period_from", type=int, metavar="HEIGHT", help="default: now")
            p.add_argument("--to", dest="period_to", type=int, metavar="HEIGHT", help="default: until revoked")
    p = add(consent, "provenance", consent_provenance, "Model versions trained on patients who later withdrew.")
    _common(p, key_help="signs the read: a hospital's, an auditor's or a clinician's key")
    p.add_argument("--model", required=True, metavar="MODEL_ID")
    p = add(consent, "history", consent_history, "A patient's consent events and every round that used them.")
    _common(p, key_help="signs the read: the patient proxy's key (or an auditor's, or the custodian's)")
    _patient(p)
    p.add_argument("--json", action="store_true")

    audit = sub.add_parser("audit", help="Who read or changed what, and when; proofs against anchored roots.",
                           formatter_class=_F).add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    for name, handler, summary in (
            ("query", audit_query, "Audit events of every validator given, matching the filters."),
            ("verify", audit_verify, "Prove each matching event against an anchor in a certified block.")):
        p = add(audit, name, handler, summary)
        _common(p, key_help="the auditor's key file or name in HOME/keys (signs the reads)")
        p.add_argument("--net", metavar="DIR", help="every node<i>/ home of a network directory")
        p.add_argument("--model", metavar="MODEL_ID")
        p.add_argument("--patient", metavar="PSEUDONYM")
        p.add_argument("--hospital", metavar="NAME")
        p.add_argument("--actor", metavar="KEY", help="the reader's public key, hex")
        p.add_argument("--since", type=int, metavar="HEIGHT")
        p.add_argument("--limit", type=int, default=500)
        if name == "query":
            p.add_argument("--json", action="store_true")
        else:
            p.add_argument("--genesis", metavar="FILE", help="the genesis whose validators certify (default: "
                                                            "--net's or --home's)")
