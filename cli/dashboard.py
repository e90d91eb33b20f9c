"""``fbci dashboard``: the web dashboard beside a validator (``client.dashboard``), as a command.

It is a client of the validator's JSON-RPC and websocket, in its own process;
its modules are imported only when the command runs, so ``fbci node start``
never loads them.
The Network page shows every validator it is told of (``--validator-rpc``);
for a home inside a testnet directory, the other homes there that hold the
same genesis are found by default. With the home's genesis file, models,
rounds and alerts are read through a light client over all of them
(:class:`client.dashboard.source.VerifiedSource`), and audit proofs are
checked against its validators.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import AddressInUse, InvalidInput
from genesis.home import HomePaths, load_config
from cli.commands import NotAvailable

if TYPE_CHECKING:
    from client.dashboard.server import Dashboard

DEFAULT_LISTEN = "127.0.0.1:8080"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Serve the web dashboard (patients, alerts, models, network, audit) beside a validator.",
        description="Serve the web dashboard beside a validator: a client of its JSON-RPC and websocket.\n\n"
                    "Patients' vitals come from this hospital's own feed (--vitals-csv DIR, one <patient>.csv per\n"
                    "patient with the columns of 'fbci predict', or a generated ward) and never leave this machine;\n"
                    "they are scored with the chain's deterioration model. Acknowledging an alert signs an\n"
                    "ids.ack_alert transaction with --key.\n\n"
                    "  fbci dashboard --home testnet/node0 --listen 127.0.0.1:8080")
    p.set_defaults(handler=main)
    p.add_argument("--home", metavar="DIR", help="the validator's home: its RPC address, keys/ and sibling homes")
    p.add_argument("--rpc", metavar="URL", help="the validator's RPC URL, http://HOST:PORT (default: from --home)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where the dashboard listens (default: {DEFAULT_LISTEN})")
    p.add_argument("--validator-rpc", action="append", default=[], metavar="URL",
                   help="another validator for the Network page (repeatable; default: the other homes beside --home)")
    p.add_argument("--key", metavar="KEY", help="key that signs acknowledgements and private reads (the Audit "
                   "page needs an auditor's): a file or a name in HOME/keys (default: hospital, gateway or admin, "
                   "the first HOME/keys has; without a key the dashboard is read-only)")
    feed = p.add_mutually_exclusive_group()
    feed.add_argument("--vitals-csv", metavar="DIR", help="directory of <patient>.csv files (default: a generated ward)")
    feed.add_argument("--ward-size", type=int, default=12, metavar="N", help="generated patients (default: 12)")
    p.add_argument("--ward-seed", type=int, default=0, metavar="SEED", help="seed of the generated ward (default: 0)")
    p.add_argument("--ward-step-s", type=float, default=10.0, metavar="S",
                   help="seconds per new generated observation (each is 30 min of ward time; default: 10)")
    p.add_argument("--alarm-threshold", type=float, metavar="P",
                   help="model score that alarms (default: the one alarming as often as NEWS2 >= 3 on this ward)")
    p.add_argument("--history-blocks", type=int, default=500, metavar="N",
                   help="recent blocks indexed for the Audit and Network pages (default: 500)")


def split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"--listen: {text!r} must be HOST:PORT")
    return host.strip("[]"), int(port)


def sibling_rpc_urls(home: Path) -> list[str]:
    """RPC URLs of the other homes beside ``home`` with the same genesis file (a testnet's layout)."""
    own = HomePaths(home).genesis
    if not own.exists():
        return []
    urls = []
    for other in sorted(p for p in home.resolve().parent.iterdir() if p.is_dir() and p != home.resolve()):
        paths = HomePaths(other)
        if paths.config.exists() and paths.genesis.exists() and paths.genesis.read_bytes() == own.read_bytes():
            urls.append(load_config(other).rpc_url())
    return urls


def build_dashboard(args: argparse.Namespace) -> Dashboard:
    from client.audit import anchor_trust
    from client.dashboard.server import Dashboard
    from client.dashboard.source import ChainSource, RpcSource, VerifiedSource
    from client.light import LightClient, home_genesis
    from client.dashboard.ward import CsvFeed, GeneratedFeed, VitalsFeed
    from client.session import reader_key, resolve_rpc_url

    home = Path(args.home) if args.home else None
    url = resolve_rpc_url(args.rpc, home)
    if args.alarm_threshold is not None and not 0.0 < args.alarm_threshold < 1.0:
        raise InvalidInput("--alarm-threshold must be between 0 and 1")
    if args.history_blocks < 1:
        raise InvalidInput("--history-blocks must be at least 1")
    if args.ward_step_s <= 0:
        raise InvalidInput("--ward-step-s must be positive")
    signer = reader_key(args.key, home)
    feed: VitalsFeed = (CsvFeed(Path(args.vitals_csv)) if args.vitals_csv
                        else GeneratedFeed(args.ward_size, args.ward_seed, step_s=args.ward_step_s))
    own = RpcSource(url, reader=signer)
    others = args.validator_rpc or (sibling_rpc_urls(home) if home is not None else [])
    rest = [RpcSource(u, reader=signer) for u in others if u.rstrip("/") != own.url]
    genesis = home_genesis(home)
    source: ChainSource = own
    if genesis is not None:  # provable reads checked against the genesis validators, from any of them
        source = VerifiedSource(own, LightClient.from_genesis(genesis, [s.client for s in (own, *rest)]))
    trusted = None if genesis is None else anchor_trust(genesis)
    return Dashboard(source, [source, *rest], feed, signer, args.alarm_threshold, args.history_blocks, trusted)


async def serve(dashboard: Dashboard, host: str, port: int) -> None:
    from aiohttp import web

    from client.dashboard.server import build_app

    runner = web.AppRunner(build_app(dashboard))
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise AddressInUse(f"--listen {host}:{port}: {exc.strerror or exc}") from None
        signer = "read-only" if dashboard.signer is None else "acknowledgements signed by this hospital's key"
        print(f"dashboard at http://{host}:{port}/ (validator {dashboard.source.url}; {signer}); Ctrl-C stops it",
              flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("plotly") is None:
        raise NotAvailable("fbci dashboard needs the plotly package for its charts: pip install 'fbci[dashboard]'")
    host, port = split_listen(args.listen)
    dashboard = build_dashboard(args)
    try:
        asyncio.run(serve(dashboard, host, port))
    except KeyboardInterrupt:
        pass
    return 0
