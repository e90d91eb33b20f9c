"""The parser of the commands that set a validator up: its keys, the genesis document, and running the node.

These are an operator's first steps on each hospital's machine (``keys gen``,
``genesis assemble`` or ``init``, ``genesis install``, ``node start``), in the
order the README walks through them.
"""

from __future__ import annotations

import argparse
from typing import Any

from genesis.create import DEFAULT_BASE_PORT, DEFAULT_CHAIN_ID
from genesis.types import ROLES
from cli import commands
from cli.args import add_command, add_group, add_home, at_least


def add_setup_commands(sub: Any) -> None:
    keys = add_group(sub, "keys", "Create and show a node's Ed25519 identity.")
    p = add_command(keys, "gen", commands.keys_gen, "Generate this machine's key and the public part to share.",
                    "Writes DIR/config/node_key.json (mode 0600, never share it) and DIR/public.json (name, public key,\n"
                    "addresses, roles), which is all the consortium needs for 'fbci genesis assemble'. Refuses to\n"
                    "overwrite an existing key. Prints public.json.\n\n"
                    "  fbci keys gen --home /srv/fbci --name st-marys --p2p fbci.st-marys.org:26600 \\\n"
                    "                --rpc http://fbci.st-marys.org:26601")
    add_home(p, what="home directory to create the key in")
    p.add_argument("--name", help="account/validator name: 1-32 of a-z 0-9 _ - (default: the directory's name)")
    p.add_argument("--roles", nargs="+", choices=ROLES, default=["validator"], metavar="ROLE",
                   help=f"roles of this key, from {', '.join(ROLES)} (default: validator)")
    p.add_argument("--p2p", metavar="HOST:PORT", help="where other validators reach this one (validators only)")
    p.add_argument("--rpc", metavar="URL", type=commands.rpc_address,
                   help="where clients reach this node's JSON-RPC server: http://HOST:PORT")
    p.add_argument("--hybrid", action="store_true",
                   help="a hybrid Ed25519 + ML-DSA-65 validator key (post-quantum votes and handshakes)")
    p = add_command(keys, "show", commands.keys_show, "Print the home's public part, after checking it matches its key.")
    add_home(p)

    gen = add_group(sub, "genesis", "Create, assemble, check and install genesis documents.")
    p = add_command(gen, "init", commands.genesis_init, "One-machine shortcut: generate every key and one home per validator.",
                    "Writes OUT/genesis.json and OUT/node<i>/ (config/node_key.json, config/config.json,\n"
                    "config/genesis.json, public.json, keys/<role>.json client keys; the admin key is in node0).\n"
                    "Node i listens on p2p BASE_PORT+2i and rpc BASE_PORT+2i+1 on 127.0.0.1.\n"
                    "For a real consortium use 'keys gen' on each machine and 'genesis assemble' instead.")
    p.add_argument("--validators", type=at_least(1), required=True, metavar="N", help="number of validators")
    p.add_argument("--out", required=True, metavar="DIR", help="a directory to write into (must not hold a network)")
    p.add_argument("--chain-id", default=DEFAULT_CHAIN_ID, help=f"chain id (default: {DEFAULT_CHAIN_ID})")
    p.add_argument("--base-port", type=at_least(1024), default=DEFAULT_BASE_PORT, metavar="PORT",
                   help=f"first port (default: {DEFAULT_BASE_PORT})")
    p.add_argument("--hospitals", type=at_least(0), metavar="N", help="hospital accounts (default: one per validator)")
    p.add_argument("--gateways", type=at_least(0), metavar="N", help="IDS gateway accounts (default: one per validator)")
    p.add_argument("--hybrid", action="store_true", help="hybrid Ed25519 + ML-DSA-65 keys for every validator")
    p.add_argument("--governance", action="store_true", help="an admin key per hospital (admin0..), deciding by "
                   "more than 2/3 of them (fbci gov) instead of one admin")
    _chain_inputs(p)
    p = add_command(gen, "assemble", commands.genesis_assemble, "Production path: build genesis.json from the hospitals' public.json files.",
                    "Everyone who runs this with the same files and arguments gets the same genesis hash (the order of\n"
                    "the files does not matter), so each hospital can check the genesis it is sent. Then, on each\n"
                    "validator's machine: 'fbci genesis install --home DIR genesis.json' and 'fbci node start --home DIR'.")
    p.add_argument("--chain-id", required=True, help="chain id: 1-64 of a-z 0-9 . _ -")
    p.add_argument("--out", required=True, metavar="FILE", help="a file: the genesis.json to write")
    p.add_argument("public", nargs="+", metavar="PUBLIC_JSON", help="public.json files from 'fbci keys gen'")
    p.add_argument("--genesis-time-ms", type=at_least(0), metavar="MS",
                   help="chain start as Unix milliseconds (default: now; give it to reproduce a genesis exactly)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    _chain_inputs(p)
    p = add_command(gen, "validate", commands.genesis_validate, "Check a genesis file and print its hash.",
                    "Every field and every consistency rule is checked; a problem is reported with the field's path.")
    p.add_argument("file", metavar="FILE", help="genesis.json to check")
    p = add_command(gen, "install", commands.genesis_install, "Set up a home made by 'keys gen' to run a validator of GENESIS.",
                    "Copies GENESIS to DIR/config/genesis.json and writes DIR/config/config.json with every other\n"
                    "validator as a peer. The home's key must be in the genesis validator set.")
    add_home(p)
    p.add_argument("genesis", metavar="GENESIS", help="the agreed genesis.json")
    p.add_argument("--p2p-listen", metavar="HOST:PORT", help="bind address for peers (default: the genesis p2p address)")
    p.add_argument("--rpc-listen", metavar="HOST:PORT", help="bind address for RPC (default: public.json rpc_address)")

    node = add_group(sub, "node", "Run this hospital's validator.")
    p = add_command(node, "start", commands.node_start, "Start the validator whose home is DIR; runs until Ctrl-C or SIGTERM.",
                    "Reads DIR/config/{config,genesis,node_key}.json, opens the stores in DIR/data, connects to its\n"
                    "peers and serves JSON-RPC (and /metrics) on its rpc_listen address. Any unexpected failure stops\n"
                    "it with exit 1 and the error (crash-only: run it under deploy/fbci-validator.service).")
    add_home(p)
    p.add_argument("--accept-wal-loss", action="store_true",
                   help="start although DIR/data/consensus.wal is missing or shorter than what this validator "
                        "signed (refused otherwise); it then sends nothing it signs up to the height it had reached")
    p.add_argument("--state-sync", action="store_true",
                   help="on an empty home, restore the state from a peer's snapshot, verified against a certified "
                        "header, instead of replaying every block (the config's state_sync: true does the same)")
    p = add_command(node, "reset", commands.delegate("cli.reset", "node_reset", "node reset"), "Delete this node's chain data (blocks, state, WAL); keep keys, config, genesis.",
                    "CometBFT's unsafe-reset-all: the next 'node start' begins at height 0 and block-syncs the chain.\n"
                    "Unsafe on a live network: the WAL and signing mark it deletes are what keep a validator from\n"
                    "signing twice, so reset every validator (a new chain) or only a testnet. Refused while the node\n"
                    "runs (it holds DIR/data/db/LOCK). Asks before deleting unless --yes.")
    add_home(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")


def _chain_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", metavar="FILE", help="JSON object overriding chain parameters (see genesis/README.md)")
    p.add_argument("--app-state", metavar="FILE", help="JSON object: initial application state (FL model declarations, "
                   "see genesis/README.md); default: the models in devnet/catalog.py")
    p.add_argument("--add-model", action="append", default=[], metavar="FILE",
                   help="a JSON model declaration (or a list of them) to add to those models; repeatable. "
                   "An id already declared is refused")
    p.add_argument("--add-device-type", action="append", default=[], metavar="FILE",
                   help="a JSON IoMT device-type declaration (or a list of them: name, rate_mpps, pkt_bytes, tcp, "
                   "port, sensor_jitter_pct) to add to the declared types; repeatable. The default iomt_ids model "
                   "then reads one more device_<name> feature per type")
