"""``fbci gov ...``: consortium decisions by quorum, and key rotation, from the command line.

``propose`` and ``approve`` sign with a member's admin key (``--home``/``--key``,
``admin`` by default); ``approve`` and ``sign`` read the proposal through the light
client (checked against commit certificates) and bind the approval to its action's
digest, so a member approves what it was shown; ``sign`` prints a member's co-signature of a proposal for
another member to carry in one ``approve``; ``list`` reads the proposals and the
validators convicted of equivocation; ``rotate-key`` replaces the sender's own
key. Registered by :func:`add_commands` from ``cli/main.py``; it only parses,
builds the payload of the ``gov.*`` and ``acl.rotate`` kinds and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import InvalidInput

_F = argparse.RawDescriptionHelpFormatter
_ROLES = ("admin", "hospital", "gateway", "clinician", "auditor")


def _public_key(text: str, what: str = "--public-key") -> bytes:
    """64 hex digits, or the ``public.json`` that ``fbci keys gen`` wrote."""
    if Path(text).is_file():
        from genesis.keys import load_public_part

        text = load_public_part(Path(text)).public_key
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidInput(f"{what}: {text[:80]!r} is neither 64 hex digits nor a public.json file")
    return raw


def _session(args: argparse.Namespace, *, signing: bool = True) -> Any:
    from client.session import ChainSession, load_client_key
    from cli.commands import _rpc_urls

    key = load_client_key(args.key, args.home) if signing else None
    return ChainSession(_rpc_urls(args)[0], key, verify=False)


def _blocks(text: str) -> int:
    from governance.contract import MAX_EXPIRY_BLOCKS

    if not text.isdigit() or not 1 <= int(text) <= MAX_EXPIRY_BLOCKS:
        raise argparse.ArgumentTypeError(f"must be a number of blocks from 1 to {MAX_EXPIRY_BLOCKS}")
    return int(text)


def _params(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The governance action and its params, as ``node.gov_actions`` checks them."""
    args.action = args.gov_action.replace("-", "_")
    if args.action == "register":
        return "register", {"public_key": _public_key(args.public_key), "name": args.name, "roles": args.role}
    if args.action in ("grant", "revoke"):
        return args.action, {"public_key": _public_key(args.public_key), "role": args.role}
    if args.action == "rotate":
        return "rotate", {"public_key": _public_key(args.public_key),
                          "new_public_key": _public_key(args.new_public_key, "--new-public-key")}
    if args.action == "validator_add":
        return "validator.add", _joining_validator(args.public_key)
    if args.action == "validator_remove":
        return "validator.remove", {"public_keys": [_public_key(k) for k in args.public_key]}
    if args.action == "validator_rotate_key":
        return "validator.rotate_key", {"public_key": _public_key(args.public_key), **_new_key(args.new_key)}
    if args.action == "params_set":
        return "params.set", {"changes": _changes(args.param, args.value)}
    from genesis.validation import read_json_file

    spec = read_json_file(Path(args.spec), error=InvalidInput)
    if not isinstance(spec, dict):
        raise InvalidInput(f"--spec: {args.spec} holds no model spec object")
    return "add_model", spec


def _changes(names: list[str], values: list[str]) -> dict[str, int]:
    """``--param NAME --value N`` pairs, in order, as ``node.chain_params`` takes them (it judges the names
    and values; this only pairs them up)."""
    if len(names) != len(values):
        raise InvalidInput(f"give one --value for each --param ({len(names)} --param, {len(values)} --value)")
    changes: dict[str, int] = {}
    for name, value in zip(names, values):
        if name in changes:
            raise InvalidInput(f"--param {name} is given twice")
        if not value.isascii() or not value.isdigit():
            raise InvalidInput(f"--value for {name}: {value[:40]!r} is not a whole number")
        changes[name] = int(value)
    return changes


def _joining_validator(path: str) -> dict[str, Any]:
    """The ``validator.add`` params from the ``public.json`` the new hospital's ``fbci keys gen --roles
    validator --p2p HOST:PORT`` wrote: its key (both halves if hybrid), name and the address peers dial."""
    from genesis.keys import load_public_part

    if not Path(path).is_file():
        raise InvalidInput(f"--public-key: {path[:80]!r} is not the public.json of the new validator "
                           "(`fbci keys gen --roles validator --p2p HOST:PORT` writes it)")
    part = load_public_part(Path(path))
    if "validator" not in part.roles or part.p2p_address is None:
        raise InvalidInput(f"--public-key: {path} is not a validator's public part (it needs role validator and "
                           "a p2p address)")
    return {"public_key": bytes.fromhex(part.public_key), "name": part.name, "p2p_address": part.p2p_address,
            **_key_type(part.ml_dsa_public_key)}


def _key_type(ml_dsa_public_key: str | None) -> dict[str, Any]:
    """A hybrid key's type and ML-DSA half, as the validator-set actions take them (nothing for Ed25519)."""
    if ml_dsa_public_key is None:
        return {}
    return {"key_type": "ed25519+ml-dsa-65", "ml_dsa_public_key": bytes.fromhex(ml_dsa_public_key)}


def _new_key(path: str) -> dict[str, Any]:
    """The ``validator.rotate_key`` new key from the ``public.json`` that ``fbci keys gen --roles validator``
    wrote in a fresh home (both halves if ``--hybrid``)."""
    from genesis.keys import load_public_part

    if not Path(path).is_file():
        raise InvalidInput(f"--new-key: {path[:80]!r} is not the public.json of the validator's new key "
                           "(`fbci keys gen --home NEW --name NAME --roles validator --p2p HOST:PORT` writes it)")
    part = load_public_part(Path(path))
    if "validator" not in part.roles:
        raise InvalidInput(f"--new-key: {path} is not a validator's public part (it needs role validator)")
    return {"new_public_key": bytes.fromhex(part.public_key), **_key_type(part.ml_dsa_public_key)}


def gov_propose(args: argparse.Namespace) -> int:
    from governance.contract import PROPOSE_KIND

    action, params = _params(args)
    with _session(args) as s:
        info = s.submit_commit(PROPOSE_KIND, {"action": action, "params": params, "expires_in": args.expires_in})
    r = info.receipt.result
    done = f"; executed: {r['executed']}" if "executed" in r else f"; members approve it with `fbci gov approve {r['id']}`"
    done += _effect(r)
    print(f"proposal {r['id']} ({action}) at height {info.receipt.height}, open until height "
          f"{info.receipt.height + args.expires_in}: {r['approvals']} of {r['required']} approvals{done}")
    return 0


def gov_sign(args: argparse.Namespace) -> int:
    from governance.contract import approval_bytes
    from governance.queries import GOV_PROPOSAL, ProposalParams

    with _session(args) as s:
        s.verify = True
        view = s.read(GOV_PROPOSAL, ProposalParams(id=args.id))
        signature = s.key.sign_signed(approval_bytes(s.chain_id, args.id, view.proposal.digest))
        member = s.key.public_key.raw
    json.dump({"proposal": args.id, "member": member.hex(), "signature": signature.hex()}, sys.stdout)
    sys.stdout.write("\n")
    print(f"co-signature of proposal {args.id} ({view.proposal.action}); another member carries it with "
          f"`fbci gov approve {args.id} --cosignature FILE`", file=sys.stderr)
    return 0


def _cosignature(path: str, proposal_id: int) -> dict[str, bytes]:
    from genesis.validation import read_json_file

    doc = read_json_file(Path(path), error=InvalidInput)
    try:
        if doc["proposal"] != proposal_id:
            raise InvalidInput(f"--cosignature {path}: signs proposal {doc['proposal']}, not {proposal_id}")
        return {"member": bytes.fromhex(doc["member"]), "signature": bytes.fromhex(doc["signature"])}
    except (KeyError, TypeError, ValueError):
        raise InvalidInput(f"--cosignature {path}: not a co-signature (`fbci gov sign` writes one)") from None


def gov_approve(args: argparse.Namespace) -> int:
    from governance.contract import APPROVE_KIND
    from governance.queries import GOV_PROPOSAL, ProposalParams

    cosignatures = [_cosignature(path, args.id) for path in args.cosignature or []]
    with _session(args) as s:
        s.verify = True  # what this member approves is read against commit certificates, not one node's word
        proposal = s.read(GOV_PROPOSAL, ProposalParams(id=args.id)).proposal
        print(f"approving proposal {proposal.id}: {proposal.action} {_summary(proposal.params)}", file=sys.stderr)
        info = s.submit_commit(APPROVE_KIND, {"id": args.id, "digest": proposal.digest,
                                              "cosignatures": cosignatures})
    r = info.receipt.result
    state = (f"executed: {r['executed']}" if "executed" in r else "still open") + _effect(r)
    print(f"proposal {r['id']} approved at height {info.receipt.height}: {r['approvals']} of {r['required']} "
          f"approvals, {state}")
    return 0


def _effect(result: dict[str, Any]) -> str:
    """When a validator-set or parameter change counts (its action returns the height)."""
    outcome = result.get("outcome") or {}
    if "effective_height" not in outcome:
        return ""
    if "params" in outcome:
        changed = ", ".join(f"{k}={v}" for k, v in outcome["params"].items())
        return f"; {changed} from height {outcome['effective_height']}"
    return f"; the new set of {outcome['validators']} validators decides from height {outcome['effective_height']}"


def gov_list(args: argparse.Namespace) -> int:
    from core.api import NoParams
    from core.wire import to_wire
    from governance.queries import GOV_CONVICTIONS, GOV_INFO, GOV_PROPOSALS, ProposalsParams

    with _session(args, signing=False) as s:
        info = s.run(lambda c: c.query(GOV_INFO, NoParams()))
        views = s.run(lambda c: c.query(GOV_PROPOSALS, ProposalsParams(status=args.status)))
        convicted = s.run(lambda c: c.query(GOV_CONVICTIONS, NoParams()))
        keys = {*(info.members if info else ()), *(v.proposal.proposer for v in views)}
        names = {k: s.run(lambda c, k=k: c.account_get(k)).name or k.hex()[:12] for k in keys}
        validators = {bytes.fromhex(v.public_key): v.name for v in s.run(lambda c: c.validators())}
    if args.json:
        json.dump(to_wire({"governance": info, "proposals": views, "convictions": convicted}), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if info is None:
        print("this chain declares no governance: its admin account acts alone")
    else:
        print(f"members: {', '.join(sorted(names[m] for m in info.members))}; a decision needs {info.required} of "
              f"{len(info.members)}")
    print(f"{'ID':>4}  {'STATUS':<9} {'ACTION':<10} {'APPROVALS':<9}  {'UNTIL':>7}  MISSING")
    for v in views:
        p = v.proposal
        missing = ", ".join(sorted(names.get(m, m.hex()[:12]) for m in v.missing)) if p.status == "open" else "-"
        print(f"{p.id:>4}  {p.status:<9} {p.action:<10} {f'{v.approved}/{v.required}':<9}  {p.expires_height:>7}  "
              f"{missing}  {_summary(p.params)}")
    if convicted:
        print("validators convicted of equivocation by evidence on chain; the members vote one out with "
              "`fbci gov propose validator-remove --public-key KEY`:")
        for c in convicted:
            print(f"  {validators.get(c.validator, '(no longer a validator)')}  key {c.validator.hex()}  "
                  f"height {c.height} view {c.view}  evidence {c.digest.hex()}")
    return 0


def _summary(params: dict[str, Any]) -> str:
    """The params a person checks before approving (keys shortened; the full ones are in ``--json``)."""
    def short(value: Any) -> str:
        if isinstance(value, bytes):  # a verified read gives bytes, a plain one their hex
            value = value.hex()
        if isinstance(value, list):
            return ",".join(short(v) for v in value)
        return f"{value[:16]}…" if isinstance(value, str) and len(value) == 64 else str(value)
    shown = " ".join(f"{k}={short(params[k])}" for k in ("name", "roles", "role", "id", "public_key", "new_public_key",
                                                          "p2p_address", "public_keys")
                     if k in params)
    changes = params.get("changes")
    return shown + " ".join(f"{k}={v}" for k, v in changes.items()) if isinstance(changes, dict) else shown


def gov_rotate_key(args: argparse.Namespace) -> int:
    from core.crypto import PrivateKey
    from core.errors import RevokedReader

    out = Path(args.out)
    if out.exists():
        raise InvalidInput(f"--out: {out} already exists")
    new = PrivateKey.generate()
    new.save(out)  # before the chain moves the account, so a crash cannot leave it with a key nobody holds
    with _session(args) as s:
        tx_hash = s.submit("acl.rotate", {"new_public_key": new.public_key.raw})
        try:
            info = s.wait_committed(tx_hash)
        except RevokedReader:  # the block that moved the account committed: tx_get is signed by the new key now
            s.client.reader = new
            info = s.wait_committed(tx_hash)
    print(f"account {info.receipt.result['rotated']} moved to key {new.public_key.hex()} at height "
          f"{info.receipt.height}; the old key is refused from the next block. The new key is in {out}: "
          f"replace the old key file with it")
    return 0


def gov_rotate_validator_key(args: argparse.Namespace) -> int:
    from client.session import ChainSession
    from cli.commands import _rpc_urls
    from core.api import NoParams
    from core.crypto import HybridPrivateKey, load_signing_key
    from core.errors import RevokedReader
    from core.validators import VALIDATOR_SETS
    from genesis.home import HomePaths, load_config

    if args.home is None:
        raise InvalidInput("--home: the validator's home, whose config/node_key.json (the old key) signs the rotation")
    params = _new_key(args.new_key)
    key = load_signing_key(HomePaths(Path(args.home)).node_key)
    signer = key.ed25519 if isinstance(key, HybridPrivateKey) else key  # the account half signs transactions
    new = params["new_public_key"]
    with ChainSession(_rpc_urls(args)[0], signer, verify=False) as s:
        tx_hash = s.submit("validator.rotate_key", params)
        try:
            effective = s.wait_committed(tx_hash).receipt.result["effective_height"]
        except RevokedReader:  # the block that moved the account committed; its key signs no read any more
            s.client.reader = None
            sets = s.run(lambda c: c.query(VALIDATOR_SETS, NoParams()))
            effective = next(item.start for item in sets if new in item.validators)
    print(f"validator {load_config(Path(args.home)).name} moves to key {new.hex()} at height {effective - 2}: "
          f"the old key signs no transaction from the next block and decides nothing from height {effective}. "
          f"Restart the validator with the new key (its node_key.json and public.json) once the chain passes "
          f"height {effective - 1}")
    return 0


def _connection(p: argparse.ArgumentParser, *, key: bool = True, default: Any = None) -> None:
    p.add_argument("--home", metavar="DIR", default=default, help="home directory: its RPC address and keys/")
    p.add_argument("--rpc", metavar="URL", default=default,
                   help="node RPC URL, http://HOST:PORT (default: from --home)")
    if key:
        p.add_argument("--key", default="admin" if default is None else default,
                       help="the member's admin key file or name in HOME/keys (default: admin)")


_NEW_KEY = {"metavar": "public.json",
            "help": "the public part of the new key (`fbci keys gen --roles validator` in a fresh home)"}
_ACTION_ARGS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "add-model": [("--spec", {"metavar": "FILE", "help": "the model spec, as genesis declares one"})],
    "validator-add": [("--public-key", {"metavar": "public.json", "help": "the new validator's public part "
                                        "(`fbci keys gen --roles validator --p2p ...`)"})],
    "validator-remove": [("--public-key", {"action": "append", "metavar": "HEX|public.json",
                                           "help": "a validator's key (repeatable)"})],
    "validator-rotate-key": [("--public-key", {"metavar": "HEX|public.json", "help": "the validator's old key"}),
                             ("--new-key", _NEW_KEY)],
    "params-set": [("--param", {"action": "append", "metavar": "NAME", "help": "a governable chain parameter, "
                                "e.g. max_tx_bytes (repeatable, each with a --value)"}),
                   ("--value", {"action": "append", "metavar": "N", "help": "its new value"})],
}
"""The arguments of the proposals that take no account key (the others: ``--public-key`` and their own)."""


def add_commands(sub: Any) -> None:
    group = sub.add_parser("gov", help="Consortium decisions by quorum of the members' admin keys; key rotation.",
                           formatter_class=_F).add_subparsers(dest="gov_command", required=True, metavar="COMMAND")

    def add(name: str, handler: Any, summary: str, *, key: bool = True) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=summary, description=summary, formatter_class=_F)
        p.set_defaults(handler=handler)
        _connection(p, key=key)
        return p

    propose = add("propose", gov_propose, "Propose a decision; proposing is the proposer's approval.")
    actions = propose.add_subparsers(dest="gov_action", required=True, metavar="ACTION")
    for name, summary in (("register", "Register a new account, with its name and roles."),
                          ("grant", "Grant a role to a registered account."),
                          ("revoke", "Revoke a role from a registered account."),
                          ("add-model", "Register an FL model spec, as genesis declares one."),
                          ("rotate", "Move an account whose key was lost to a new key."),
                          ("validator-add", "Add a hospital's validator to the set, two blocks after the decision."),
                          ("validator-remove", "Remove validators from the set (at most f at once; 4 stay)."),
                          ("validator-rotate-key", "Move a validator whose key was lost to a new key, two blocks after."),
                          ("params-set", "Change chain parameters, two blocks after the decision (README: which).")):
        p = actions.add_parser(name, help=summary, description=summary)
        _connection(p, default=argparse.SUPPRESS)  # accepted after the action too
        p.add_argument("--expires-in", type=_blocks, default=1000, metavar="BLOCKS",
                       help="blocks the proposal stays open (default: 1000)")
        for flag, options in _ACTION_ARGS.get(name, ()):
            p.add_argument(flag, required=True, **options)
        if name in _ACTION_ARGS:
            continue
        p.add_argument("--public-key", required=True, metavar="HEX|public.json", help="the account's key")
        if name == "register":
            p.add_argument("--name", required=True, help="account name (lower case)")
            p.add_argument("--role", action="append", required=True, choices=_ROLES, help="a role (repeatable)")
        elif name in ("grant", "revoke"):
            p.add_argument("--role", required=True, choices=_ROLES)
        else:
            p.add_argument("--new-public-key", required=True, metavar="HEX|public.json")
    p = add("approve", gov_approve, "Approve a proposal, with other members' co-signatures if given.")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--cosignature", action="append", metavar="FILE", help="a file `fbci gov sign` wrote (repeatable)")
    p = add("sign", gov_sign, "Print this member's co-signature of a proposal, for another member's approve.")
    p.add_argument("id", type=int, metavar="ID")
    p = add("list", gov_list, "Proposals (approvals, who is missing) and validators convicted of equivocation.",
            key=False)
    p.add_argument("--status", choices=("open", "executed", "expired"))
    p.add_argument("--json", action="store_true")
    p = add("rotate-validator-key", gov_rotate_validator_key,
            "Replace this validator's consensus key (validator.rotate_key, signed by the old one), from H + 2.",
            key=False)
    p.add_argument("--new-key", required=True, **_NEW_KEY)
    p = add("rotate-key", gov_rotate_key, "Replace this account's key by a new one (acl.rotate, signed by the old).")
    p.add_argument("--out", required=True, metavar="FILE", help="a file: where to write the new key (mode 0600)")
