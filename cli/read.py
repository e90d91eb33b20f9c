"""The read side of ``fbci``: a block, a transaction, FL models and rounds, IDS alerts, any method by name.

Every command reads through the query's one definition (``core.api``,
``fl_contracts.queries``, ``ids.queries``) via ``client.rpc``; ``--json``
prints that typed result as the wire carries it (``core.wire.to_wire``), the
table is ``client.views``'s screen of the same object. Input is checked here,
before anything is sent: a malformed hash or height is a usage problem the
node need not see. Names in tables (proposer, signers, senders) are read
from the chain, never guessed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from core.errors import InvalidInput
from core.wire import to_wire
from fl_contracts.contract import RoundRecord
from ids.queries import ALERTS_QUERY, AlertsQueryParams
from client.session import ChainSession, reader_key
from client.views import SEVERITIES, Names, alerts_view, block_view, models_view, rounds_view, tx_view
from cli.commands import _print, _rpc_urls

TIMEOUT_S = 15.0
HASH_HEX = 64


def _session(args: argparse.Namespace) -> ChainSession:
    """Signed with ``--key`` (or the home's own client key), since most reads are private by default."""
    return ChainSession(_rpc_urls(args)[0], reader_key(args.key, args.home), timeout_s=TIMEOUT_S)


def _show(args: argparse.Namespace, result: Any, render: Callable[[], str]) -> int:
    _print(json.dumps(to_wire(result), indent=2) if args.json else render())
    return 0


def _hash(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(text) != HASH_HEX or len(raw) != HASH_HEX // 2:
        raise InvalidInput(f"{what}: {text!r} is not a hash (64 hex digits, no 0x)")
    return raw


def block_ref(text: str) -> tuple[int | None, bytes | None]:
    """``latest``, a height, or a block hash, as ``(height, hash)`` for ``block_get`` (both None: latest)."""
    if text == "latest":
        return None, None
    if text.isdigit() and len(text) < HASH_HEX:
        return int(text), None
    try:
        return None, _hash(text, "HEIGHT|HASH")
    except InvalidInput:
        raise InvalidInput(f"HEIGHT|HASH: {text!r} is neither a height (a number) nor a block hash "
                           "(64 hex digits)") from None


def _validator_names(session: ChainSession) -> Names:
    return {bytes.fromhex(v.public_key): v.name for v in session.run(lambda c: c.validators())}


def _account_names(session: ChainSession, keys: set[bytes]) -> Names:
    names = {}
    for key in keys:
        name = session.run(lambda c: c.account_get(key)).name
        if name is not None:
            names[key] = name
    return names


def block_get(args: argparse.Namespace) -> int:
    height, block_hash = block_ref(args.block)
    with _session(args) as session:
        block = session.run(lambda c: c.get_block(height, block_hash))
        names = _validator_names(session)
    return _show(args, block, lambda: block_view(block, names, len(names)))


def tx_get(args: argparse.Namespace) -> int:
    tx_hash = _hash(args.hash, "HASH")
    with _session(args) as session:
        info = session.run(lambda c: c.get_tx(tx_hash))
        names = {**_validator_names(session), **_account_names(session, {info.sender})}
    return _show(args, info, lambda: tx_view(info, names))


def fl_models(args: argparse.Namespace) -> int:
    with _session(args) as session:
        models = session.run(lambda c: c.fl_models())
        open_rounds = {m.spec.id: session.rounds(m.spec.id)[-1] for m in models}
    return _show(args, models, lambda: models_view(models, open_rounds))


def fl_rounds(args: argparse.Namespace) -> int:
    with _session(args) as session:
        model_ids = [args.model] if args.model else [m.spec.id for m in session.run(lambda c: c.fl_models())]
        rounds: list[RoundRecord] = []
        for model_id in model_ids:
            history = session.rounds(model_id)
            rounds += history[-args.last:] if args.last else history
        excluded = {p.sender for r in rounds for p in r.participants if p.excluded}
        names = _account_names(session, excluded)
    return _show(args, rounds, lambda: rounds_view(rounds, names))


_ALERT_OPTIONS = {"hospital": "--hospital", "subject": "--subject", "alert_class": "--class",
                  "min_severity": "--min-severity", "from_height": "--from-height", "to_height": "--to-height",
                  "cursor": "--cursor", "limit": "--limit"}


def ids_alerts(args: argparse.Namespace) -> int:
    filters = {name: getattr(args, name) for name in _ALERT_OPTIONS}
    if filters["min_severity"] is not None:  # a name or a level, as argparse's choices allow
        levels = {name: level for level, name in SEVERITIES.items()}
        filters["min_severity"] = levels.get(filters["min_severity"]) or int(filters["min_severity"])
    if filters["subject"] is not None:
        filters["subject"] = _hash(filters["subject"], "--subject")
    try:
        params = AlertsQueryParams(**filters)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = _ALERT_OPTIONS.get(str(first["loc"][0]) if first["loc"] else "", "filters")
        raise InvalidInput(f"{option}: {first['msg'].removeprefix('Value error, ')}") from None
    with _session(args) as session:
        page = session.run(lambda c: c.query(ALERTS_QUERY, params))
    return _show(args, page, lambda: alerts_view(page))


def rpc_call(args: argparse.Namespace) -> int:
    """``fbci rpc call METHOD [PARAMS]``: any JSON-RPC method, a private read signed for the user."""
    try:
        params = json.loads(args.params) if args.params is not None else None
    except ValueError as exc:
        raise InvalidInput(f"PARAMS: not JSON ({exc})") from None
    if params is not None and not isinstance(params, dict | list):
        raise InvalidInput("PARAMS: a JSON object (by name) or array (by position)")
    with _session(args) as session:
        result = session.run(lambda c: c.call_read(args.method, params))
    _print(json.dumps(result, indent=2))
    return 0
