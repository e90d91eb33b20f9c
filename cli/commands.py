"""What each ``fbci`` command does; ``cli/main.py`` holds the parser and the error rule.

The key and genesis commands are implemented here, the chain reads in
``cli/read.py`` and ``node reset`` in ``cli/reset.py``. The others (node,
testnet, status, tx submit, fl train, ids watch, predict, demo) are imported
inside their handlers, so ``fbci --help`` stays fast, a build without one of
them still runs the rest, and ``fbci node start`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.crypto import PrivateKey
from core.errors import FbciError, InvalidGenesis, InvalidInput
from core.tx import KIND_PATTERN
from genesis.create import DEFAULT_RPC, assemble, init_network, install_genesis, load_parts
from genesis.keys import generate_identity, show_identity
from genesis.schema import ChainParams, load_genesis, write_genesis
from genesis.validation import FieldError, check_canonical_json, format_loc, parse_json, read_json_file, validate_model
from genesis.home import load_config

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_OWN_PACKAGES = ("core", "consensus", "fl_contracts", "ids", "genesis", "node", "client", "cli", "devnet")


class NotAvailable(FbciError):
    """A command whose implementation (or a package it needs) is not part of this installation."""

    code = -32601
    reason = "not_available"


def _not_available(exc: ModuleNotFoundError, command: str) -> NotAvailable:
    missing = exc.name or "?"
    if missing.split(".")[0] in _OWN_PACKAGES:
        return NotAvailable(f"'fbci {command}' is not available in this build ({missing} is missing)")
    hint = " (pip install -e '.[train]')" if missing.split(".")[0] in ("torch", "opacus") else ""
    return NotAvailable(f"'fbci {command}' needs the Python package {missing!r}, which is not installed{hint}")


def _provided(module: str, attr: str, command: str) -> Callable[..., Any]:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise _not_available(exc, command) from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise NotAvailable(f"'fbci {command}' is not available in this build ({module}.{attr} is missing)")
    return fn


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --- keys and genesis: implemented here -------------------------------------------------------

def keys_gen(args: argparse.Namespace) -> int:
    home = Path(args.home)
    if "validator" in args.roles and not args.p2p:
        raise InvalidInput("--p2p HOST:PORT is required for a validator: the address the other validators dial")
    part = generate_identity(home, name=args.name or home.resolve().name, roles=args.roles,
                             p2p_address=args.p2p, rpc_address=args.rpc, hybrid=args.hybrid)
    _print(part.to_json())
    print(f"wrote {home / 'config' / 'node_key.json'} (private, mode 0600) and {home / 'public.json'}; "
          "share only public.json", file=sys.stderr)
    return 0


def keys_show(args: argparse.Namespace) -> int:
    _print(show_identity(Path(args.home)).to_json())
    return 0


def _params(path: str | None) -> ChainParams | None:
    if path is None:
        return None
    return validate_model(ChainParams, read_json_file(Path(path), error=InvalidGenesis), source=path,
                          error=InvalidGenesis)


def _app_state(path: str | None, hospitals: int, add: list[str], add_devices: Sequence[str] = ()) -> dict[str, Any]:
    """The given file, or the one-machine default models (devnet/catalog.py), plus ``--add-model``'s and
    ``--add-device-type``'s; either way with its ``read_policy`` written out, so the operator sees which
    reads are private."""
    from cli.device_types import add_device_types, checked, declared_devices
    from cli.models import add_models
    from devnet.catalog import default_app_state, with_read_policy

    if path is None:
        return checked(add_models(default_app_state(hospitals, declared_devices({}, add_devices)), add))
    state = read_json_file(Path(path), error=InvalidGenesis)
    if not isinstance(state, dict):
        raise InvalidGenesis(f"--app-state {path}: must hold a JSON object")
    return checked(with_read_policy(add_models(add_device_types(state, add_devices), add)))


def genesis_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    net = init_network(args.validators, out, chain_id=args.chain_id, base_port=args.base_port,
                       hospitals=args.hospitals, gateways=args.gateways, params=_params(args.params),
                       app_state=_app_state(args.app_state, args.hospitals or args.validators, args.add_model,
                                            args.add_device_type),
                       hybrid=args.hybrid,
                       governance=args.governance)
    _print(f"chain {net.genesis.chain_id}: {len(net.homes)} validator(s), genesis hash {net.genesis.hash().hex()}")
    _print(f"genesis: {net.genesis_path}")
    for home, v in zip(net.homes, net.genesis.validators):
        _print(f"  {v.name}: home {home}  p2p {v.p2p_address}  rpc {load_config(home).rpc_url()}")
    admins = "each node's keys/admin.json, members of governance" if args.governance else \
        f"{net.homes[0]}/keys/admin.json"
    _print(f"start each with: fbci node start --home {net.homes[0]}   (admin key: {admins})")
    return 0


def genesis_assemble(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise InvalidInput(f"{out} already exists (pass --force to replace it)")
    parts = load_parts([Path(p) for p in args.public])
    hospitals = max(1, sum("hospital" in part.roles for part in parts))
    doc = assemble(args.chain_id, parts,
                   genesis_time_ms=time.time_ns() // 1_000_000 if args.genesis_time_ms is None else args.genesis_time_ms,
                   params=_params(args.params),
                   app_state=_app_state(args.app_state, hospitals, args.add_model, args.add_device_type))
    write_genesis(doc, out)
    _print(f"wrote {out}: chain {doc.chain_id}, {len(doc.validators)} validator(s), "
           f"{len(doc.accounts)} account(s), genesis hash {doc.hash().hex()}")
    return 0


def genesis_validate(args: argparse.Namespace) -> int:
    doc = load_genesis(Path(args.file))
    _print(f"ok: chain {doc.chain_id}, {len(doc.validators)} validator(s), {len(doc.accounts)} account(s), "
           f"genesis hash {doc.hash().hex()}")
    return 0


def genesis_install(args: argparse.Namespace) -> int:
    config = install_genesis(Path(args.home), load_genesis(Path(args.genesis)),
                             p2p_listen=args.p2p_listen, rpc_listen=args.rpc_listen)
    _print(f"{args.home} is set up as {config.name}: p2p {config.p2p_listen}, rpc {config.rpc_listen}, "
           f"{len(config.peers)} peer(s); start it with: fbci node start --home {args.home}")
    return 0


# --- provided by the integrator: imported lazily ------------------------------------------------

def node_start(args: argparse.Namespace) -> int | None:
    run = _provided("node.runtime", "run_validator", "node start")
    return run(Path(args.home), accept_wal_loss=args.accept_wal_loss, state_sync=args.state_sync)


def testnet(args: argparse.Namespace) -> int | None:
    run = _provided("devnet.testnet", "run_testnet", "testnet")
    out = Path(args.out)
    existing = _provided("devnet.testnet", "describe_testnet", "testnet")(out)
    resume = args.resume
    if existing is None and resume:
        raise InvalidInput(f"--resume: {out} holds no testnet to resume")
    if existing is not None and resume is None:
        resume = _ask_resume(out, existing)
    return run(n_validators=args.validators, out_dir=out, base_port=args.base_port, resume=bool(resume),
               hybrid=args.hybrid)


def _ask_resume(out: Path, existing: str) -> bool:
    if not sys.stdin.isatty():
        raise InvalidInput(f"{out} already holds a testnet ({existing}); pass --resume to start it again or "
                           "--fresh to replace it")
    answer = input(f"{out} already holds a testnet ({existing}).\n"
                   "Resume it (r), replace it with a fresh one (f), or quit (q)? [r/f/q] ").strip().lower()
    if answer in ("r", "resume", ""):
        return True
    if answer in ("f", "fresh"):
        return False
    raise InvalidInput("nothing started; the testnet is unchanged")


def rpc_address(text: str) -> str:
    """argparse type for ``keys gen --rpc``: a URL like every other --rpc, kept as HOST:PORT in public.json."""
    if not text.startswith("http://"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a URL, http://HOST:PORT, as every --rpc is")
    return text.removeprefix("http://").rstrip("/")


def _rpc_urls(args: argparse.Namespace) -> list[str]:
    urls = [args.rpc] if isinstance(args.rpc, str) else list(args.rpc or [])  # --rpc once, or repeatable
    if not urls:
        urls = [load_config(Path(args.home)).rpc_url()] if args.home else [DEFAULT_RPC]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"--rpc: {url!r} must be an http:// or https:// URL")
    return urls


def home_rpc_url(text: str) -> str:
    """argparse type for ``status --home DIR``: the RPC URL in that home's config."""
    try:
        return load_config(Path(text)).rpc_url()
    except FbciError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None


def network_rpc_urls(text: str) -> list[str]:
    """argparse type for ``status --net DIR``: the RPC URL of every ``DIR/node<i>`` home, in order."""
    from devnet.testnet import network_homes

    homes = network_homes(Path(text))
    if not homes:
        raise argparse.ArgumentTypeError(f"{text}: no node<i>/config/config.json homes in it")
    return [home_rpc_url(str(home)) for home in homes]


def status(args: argparse.Namespace) -> int | None:
    return _provided("client.status", "show_status", "status")(rpc_urls=_rpc_urls(args), as_json=args.json)


def _client_key(args: argparse.Namespace) -> PrivateKey:
    """``--key`` is a key file, or the name of one in ``HOME/keys`` (``hospital`` -> keys/hospital.json)."""
    candidate = Path(args.key)
    if not candidate.exists() and args.home:
        candidate = Path(args.home) / "keys" / f"{args.key}.json"
    return PrivateKey.load(candidate)


def tx_submit(args: argparse.Namespace) -> int:
    if not KIND_PATTERN.match(args.kind):
        raise InvalidInput(f"--kind: {args.kind!r} must look like 'module.action' (lower case)")
    payload = parse_json(args.payload, source="--payload", error=InvalidInput)
    if not isinstance(payload, dict):
        raise InvalidInput("--payload: must be a JSON object")
    try:
        check_canonical_json(payload, ("payload",))
    except FieldError as exc:
        raise InvalidInput(f"--payload: {format_loc(exc.loc)}: {exc.message}") from None
    submit = _provided("client.rpc", "submit_tx", "tx submit")
    result = submit(_rpc_urls(args)[0], _client_key(args), args.kind, payload, commit=args.commit)
    _print(json.dumps(result, indent=2))
    return 0


def delegate(module: str, attr: str, command: str) -> Callable[[argparse.Namespace], int | None]:
    def run(args: argparse.Namespace) -> int | None:
        handler = _provided(module, attr, command)
        try:
            return handler(args)
        except ModuleNotFoundError as exc:  # imported only once needed, e.g. torch when fl train starts training
            raise _not_available(exc, command) from None
    return run
