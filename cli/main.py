"""The ``fbci`` command line: one entry point for operators, developers and scripts.

Rule: no traceback reaches a user. An :class:`FbciError` is printed as
``error[<code> <reason>]: <message>`` and exits with its class's status
(:data:`EXIT_STATUS`: 3 not found, 4 node unreachable or too slow, 1 the
rest); a usage error, or a command this build does not include, exits 2;
Ctrl-C exits 130; anything else is a one-line "internal error" (exit 1),
with the traceback only under ``FBCI_DEBUG=1``. The commands themselves are
in ``cli/commands.py`` and, imported only when run, ``cli/read.py``,
``cli/reset.py`` and the packages they call; the setup commands' parser (keys,
genesis, node) is in ``cli/setup_parser.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from core.errors import FbciError, NodeUnreachable, NotFound, StorageError, Timeout
from genesis.create import DEFAULT_BASE_PORT
from cli import commands, consent_audit, dashboard, gov
from cli.args import HELP_FORMAT, add_command, add_group, add_home, at_least
from cli.setup_parser import add_setup_commands
from cli.version import version_line
from cli.commands import DEFAULT_RPC, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, NotAvailable

EXIT_NOT_FOUND, EXIT_UNREACHABLE = 3, 4
EXIT_STATUS: tuple[tuple[type[FbciError], int], ...] = (
    (NotFound, EXIT_NOT_FOUND), (NodeUnreachable, EXIT_UNREACHABLE), (Timeout, EXIT_UNREACHABLE))
"""Exit status by error class, first match wins; any other :class:`FbciError` exits 1."""

# --- parser -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbci", formatter_class=HELP_FORMAT,
        description="fbci: a permissioned BFT blockchain for hospitals, with federated learning and IoMT "
                    "intrusion detection on chain.",
        epilog="Try it on one machine:\n"
               "  fbci testnet --validators 4            # four validators on loopback\n"
               "  fbci demo                              # the whole story in one command\n"
               "A real consortium: see 'fbci genesis --help' (keys never leave their machine).\n"
               "Every command takes --help. Errors print 'error[<code> <reason>]: <message>'. Exit status:\n"
               "  0 ok   1 error   2 usage error or command not in this build   3 not found (block, tx, model)\n"
               "  4 no validator answers at --rpc, or not in time   130 interrupted\n"
               "Set FBCI_DEBUG=1 to see tracebacks of internal errors.")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_setup_commands(sub)

    p = add_command(sub, "testnet", commands.testnet, "Start N local validators as real processes on loopback.",
                    "Creates a network in OUT as 'genesis init' does, starts every validator, prints where each\n"
                    "listens, and stops them all on Ctrl-C. When OUT already holds a testnet it asks whether to resume\n"
                    "it (same keys and chain, from the stored blocks) or start a fresh one; --resume or --fresh decide\n"
                    "without asking.")
    p.add_argument("--validators", type=at_least(1), metavar="N",
                   help="number of validators (default: 4; a resumed testnet keeps its own)")
    p.add_argument("--out", default="testnet", metavar="DIR", help="a directory: the network's (default: ./testnet)")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--resume", dest="resume", action="store_const", const=True,
                        help="OUT holds a testnet: start its validators again")
    choice.add_argument("--fresh", dest="resume", action="store_const", const=False,
                        help="OUT holds a testnet made by 'fbci testnet': delete it and create a new one")
    p.add_argument("--base-port", type=at_least(1024), default=DEFAULT_BASE_PORT, metavar="PORT",
                   help=f"first port (default: {DEFAULT_BASE_PORT})")
    p.add_argument("--hybrid", action="store_true", help="hybrid Ed25519 + ML-DSA-65 keys for every validator")

    p = add_command(sub, "status", commands.status, "Show height, hash, view, peers, mempool and sync state of each node.",
                    "Asks every node at once and checks they agree: each reports its block at the lowest height they\n"
                    "all have, and different hashes there are flagged as DIVERGED. Exit 1 when a node is unreachable\n"
                    "or the chain diverged, so it doubles as a health check.\n\n"
                    "  fbci status --net testnet                     # every validator of a local network\n"
                    "  fbci status --home testnet/node0 --rpc http://10.0.0.7:26601")
    p.add_argument("--rpc", action="append", metavar="URL", help=f"node RPC URL (repeatable; default: {DEFAULT_RPC})")
    p.add_argument("--home", action="append", dest="rpc", type=commands.home_rpc_url, metavar="DIR",
                   help="a node's home directory; its RPC address is used (repeatable, mixes with --rpc)")
    p.add_argument("--net", action="extend", dest="rpc", type=commands.network_rpc_urls, metavar="DIR",
                   help="a network directory from 'genesis init' or 'testnet': every node<i>/ home in it")
    p.set_defaults(home=None)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    tx = add_group(sub, "tx", "Sign and submit transactions.")
    p = add_command(tx, "submit", commands.tx_submit, "Sign a transaction with your key and submit it over JSON-RPC.",
                    "The node supplies the chain id and your next nonce. JSON has no bytes: write them as \"0x<hex>\".\n"
                    "With --commit, a transaction the chain executed but rejected exits 1 with the receipt's error.\n\n"
                    "  fbci tx submit --home testnet/node0 --key admin --kind acl.register \\\n"
                    "      --payload '{\"name\": \"lab1\", \"public_key\": \"0x<64 hex>\", \"roles\": [\"hospital\"]}' --commit")
    _rpc_options(p, many=False)
    p.add_argument("--key", required=True, help="key file, or a key name in HOME/keys (e.g. admin, hospital)")
    p.add_argument("--kind", required=True, help="transaction kind, 'module.action' (e.g. acl.register)")
    p.add_argument("--payload", required=True, metavar="JSON", help="payload as a JSON object (integers, no floats)")
    p.add_argument("--commit", action="store_true", help="wait until the transaction is in a committed block")
    p = add_command(tx, "get", _read("tx_get", "tx get"), "Show a committed transaction: kind, sender, block, outcome, payload, result.",
                    "  fbci tx get --home testnet/node0 5f2c...e1 (the 64-hex hash 'tx submit' printed)")
    _read_options(p)
    p.add_argument("hash", metavar="HASH", help="transaction hash, 64 hex digits")

    block = add_group(sub, "block", "Read committed blocks and their commit certificates.")
    p = add_command(block, "get", _read("block_get", "block get"), "Show a block: header, proposer, transactions and commit certificate.",
                    "  fbci block get --home testnet/node0 12        # by height\n"
                    "  fbci block get --home testnet/node0 latest    # the newest committed block")
    _read_options(p)
    p.add_argument("block", nargs="?", default="latest", metavar="HEIGHT|HASH",
                   help="a height, a block hash (64 hex digits) or 'latest' (default)")

    rpc = add_group(sub, "rpc", "Call any JSON-RPC method, signing private reads for you.")
    p = add_command(rpc, "call", _read("rpc_call", "rpc call"), "Call one method and print its JSON result; a private read "
                    "(x-access in rpc_discover) is signed with --key.",
                    "  fbci rpc call --home net/node0 status\n"
                    "  fbci rpc call --home net/node0 --key hospital fl_model_get '{\"model_id\": \"breast_cancer\"}'")
    _rpc_options(p, many=False)
    p.add_argument("--key", metavar="KEY", help="key that signs private reads: a file or a name in HOME/keys "
                   "(default: the home's hospital, gateway or admin key, the first it holds)")
    p.add_argument("method", metavar="METHOD", help="the method name (rpc_discover lists them)")
    p.add_argument("params", nargs="?", metavar="PARAMS", help="params as JSON: an object (by name) or an array")

    fl = add_group(sub, "fl", "Federated learning from a hospital's side.")
    p = add_command(fl, "train", commands.delegate("client.fl.train", "main", "fl train"),
                    "Train locally on this hospital's data and submit a clipped, noised, quantized update per round.",
                    "Patient data never leaves the machine; only the model delta is signed and submitted. Each round:\n"
                    "fetch the global model from chain, train, clip (and noise with --dp-noise), submit, wait for the\n"
                    "round to close. The local data is this hospital's share of a named data set:\n"
                    "  breast_cancer  its Dirichlet(0.5) label-skew share of scikit-learn's breast cancer set\n"
                    "  iomt           IoMT flows of HOSPITAL_PROFILES[I] (ids.flows), for the iomt_ids model\n"
                    "  vitals         NEWS2-labelled vital-sign windows of its patients, for the deterioration model\n\n"
                    "  fbci fl train --home testnet/node0 --model breast_cancer --dataset breast_cancer \\\n"
                    "      --hospital-index 0 --hospitals 4 --rounds 5 --dp-noise 1.0 --dp-clip 1.0")
    _rpc_options(p, many=False)
    p.add_argument("--key", default="hospital", help="hospital key file or name in HOME/keys (default: hospital)")
    p.add_argument("--model", required=True, metavar="MODEL_ID", help="model id declared on chain")
    p.add_argument("--dataset", choices=("breast_cancer", "iomt", "vitals"), default=None,
                   help="local data set (default: the model's: breast_cancer* -> breast_cancer, "
                        "iomt_ids -> iomt, deterioration -> vitals)")
    p.add_argument("--csv", metavar="FILE", help="train on this hospital's own table instead of --dataset: a header "
                   "row, the model's input features in its declared order, and the --target column")
    p.add_argument("--target", metavar="COLUMN", help="with --csv: the column holding the class index 0..C-1")
    p.add_argument("--hospital-index", type=at_least(0), default=0, metavar="I",
                   help="which hospital's share this is (default: 0)")
    p.add_argument("--hospitals", type=at_least(1), default=4, metavar="N", help="hospitals sharing the data (default: 4)")
    p.add_argument("--samples", type=at_least(10), metavar="N",
                   help="records (iomt) or patients (vitals) this hospital generates (default: 2000 / 40)")
    p.add_argument("--rounds", type=at_least(1), default=1, metavar="N", help="rounds to take part in (default: 1)")
    p.add_argument("--epochs", type=at_least(1), metavar="E", help="local epochs per round (default: per data set)")
    p.add_argument("--lr", type=float, metavar="LR", help="SGD learning rate (default: per data set)")
    p.add_argument("--batch-size", type=at_least(1), metavar="B", help="minibatch size (default: per data set)")
    p.add_argument("--dp-noise", type=float, metavar="SIGMA", help="DP noise multiplier; turns client-level DP on")
    p.add_argument("--dp-clip", type=float, default=1.0, metavar="C", help="DP clip norm (default: 1.0)")
    p.add_argument("--dp-delta", type=float, default=1e-5, metavar="DELTA", help="DP delta (default: 1e-5)")
    p.add_argument("--poison", choices=("sign_flip", "noise", "sign_flip_then_noise"),
                   help="act as a poisoning hospital (for robustness experiments only)")
    p.add_argument("--seed", type=int, default=0, help="seed for the data split and training (default: 0)")
    p.add_argument("--round-timeout", type=float, default=180.0, metavar="S",
                   help="seconds to wait for a round to close (default: 180)")
    p.add_argument("--secure", action="store_true", help="refuse to train unless the model aggregates securely")
    p = add_command(fl, "models", _read("fl_models", "fl models"), "List the models declared on chain, with their version and open round.",
                    "A model's version counts the rounds that produced an aggregate; its round number counts every\n"
                    "round opened, including those that failed for too few updates (see 'fbci fl rounds').")
    _read_options(p)
    p = add_command(fl, "rounds", _read("fl_rounds", "fl rounds"), "Show the round history of one model or all: status, versions, updates.",
                    "Each row is a round, oldest first; the last one per model is open. An aggregated round turns its\n"
                    "base version vN into vN+1; a round that closes at its deadline with too few updates fails and\n"
                    "keeps vN, so round numbers run ahead of versions.\n\n"
                    "  fbci fl rounds --home testnet/node0 --model breast_cancer --last 5")
    _read_options(p)
    p.add_argument("--model", metavar="MODEL_ID", help="one model id (default: every model)")
    p.add_argument("--last", type=at_least(1), metavar="N", help="only the last N rounds of each model")

    ids = add_group(sub, "ids", "Intrusion detection from a gateway's side.")
    p = add_command(ids, "watch", commands.delegate("client.ids_watch", "main", "ids watch"),
                    "Score IoMT flow records with the chain's IDS model and post alerts on chain.",
                    "Loads the current iomt_ids global model from chain (before its first round: the training-free\n"
                    "rules), scores each flow record, and submits one signed ids.alert per device, class and window\n"
                    "(later hits in the window are only counted). Device ids are pseudonymised (HMAC under a secret\n"
                    "derived from the gateway key). Records: WUSTL-EHMS-2020 CSV, JSON lines, or generated traffic.\n\n"
                    "  fbci ids watch --home testnet/node0 --generate 2000 --profile st-mary-icu --attack-rate 0.4")
    _rpc_options(p, many=False)
    p.add_argument("--key", default="gateway", help="gateway key file or name in HOME/keys (default: gateway)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="CSV of flow records (WUSTL-EHMS-2020 header)")
    src.add_argument("--jsonl", metavar="FILE", help="JSON lines of flow records")
    src.add_argument("--stdin", action="store_true", help="JSON lines of flow records on standard input")
    src.add_argument("--generate", type=at_least(1), metavar="N", help="generate N synthetic flow records")
    p.add_argument("--profile", default="st-mary-icu", metavar="NAME",
                   help="hospital profile for --generate (ids.flows.HOSPITAL_PROFILES; default: st-mary-icu)")
    p.add_argument("--attack-rate", type=float, metavar="P", help="share of attack records for --generate "
                   "(default: the profile's mix)")
    p.add_argument("--seed", type=int, default=0, help="seed for --generate (default: 0)")
    p.add_argument("--model-version", default="latest", metavar="N|latest",
                   help="iomt_ids version to score with (default: latest)")
    p.add_argument("--window-ms", type=at_least(1000), default=60_000, metavar="MS",
                   help="dedup window: one alert per device, class and window (default: 60000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p = add_command(ids, "alerts", _read("ids_alerts", "ids alerts"), "List IDS alerts committed on chain, oldest first, with filters.",
                    "Filters combine; heights are inclusive. One page of --limit alerts; the next page's --cursor is\n"
                    "printed under the table.\n\n"
                    "  fbci ids alerts --home testnet/node0 --class spoofing --min-severity high")
    _read_options(p)
    p.add_argument("--hospital", help="reporting account (gateway or validator name)")
    p.add_argument("--subject", metavar="HEX", help="device pseudonym or other subject, 64 hex digits")
    p.add_argument("--class", dest="alert_class", metavar="CLASS", help="alert class, e.g. spoofing, request_flood")
    p.add_argument("--min-severity", choices=("low", "medium", "high", "critical", "1", "2", "3", "4"),
                   metavar="LEVEL", help="low, medium, high or critical (or 1-4)")
    p.add_argument("--from-height", type=at_least(0), metavar="H", help="first height (inclusive)")
    p.add_argument("--to-height", type=at_least(0), metavar="H", help="last height (inclusive)")
    p.add_argument("--cursor", help="continue after the previous page (printed under its table)")
    p.add_argument("--limit", type=at_least(1), default=100, metavar="N", help="alerts per page, at most 500 (default: 100)")

    p = add_command(sub, "predict", commands.delegate("client.predict", "main", "predict"),
                    "Score a patient's recent vitals with the chain's deterioration model and explain the score.",
                    "The CSV holds one observation per row, oldest first, every 30 minutes, with the columns\n"
                    "resp_rate, spo2, temp, sys, heart_rate, on_oxygen (0/1), alert (1 = alert, 0 = new confusion);\n"
                    "the last 4 hours are scored. Prints the probability of NEWS2 >= 5 within 6 hours and the vitals\n"
                    "that drove it.\n\n"
                    "  fbci predict --rpc http://127.0.0.1:26601 --generate-patient 7")
    _rpc_options(p, many=False)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="CSV of the patient's observations")
    src.add_argument("--generate-patient", type=int, metavar="SEED", help="score a generated patient (ids.vitals)")
    p.add_argument("--model", default="deterioration", metavar="MODEL_ID", help="model id (default: deterioration)")
    p.add_argument("--key", metavar="KEY", help="key that signs private reads: a file or a name in HOME/keys "
                   "(default: the home's hospital, gateway or admin key, the first it holds)")
    p.add_argument("--model-version", dest="version", type=_model_version, metavar="N|latest",
                   help="deterioration version to score with (default: latest)")
    p.add_argument("--patient", metavar="PSEUDONYM", help="the patient's pseudonym (fbci consent pseudonym --mrn): "
                   "the model read names it, so the audit trail shows who read this patient's predictions")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add_command(sub, "demo", commands.delegate("devnet.demo", "run_demo", "demo"),
                    "Run the whole story on one machine: testnet, FL rounds, IDS alerts, prediction, audit trail.")
    p.add_argument("--validators", type=at_least(1), default=4, metavar="N", help="validators (default: 4)")
    p.add_argument("--out", default="demo-home", metavar="DIR",
                   help="a directory: the demo's network, deleted by the next run (default: ./demo-home)")
    p.add_argument("--fl-rounds", type=at_least(1), default=20, metavar="N",
                   help="breast-cancer training rounds (default: 20)")
    p.add_argument("--base-port", type=at_least(1024), default=DEFAULT_BASE_PORT + 100, metavar="PORT",
                   help=f"first port (default: {DEFAULT_BASE_PORT + 100})")
    p.add_argument("--keep", action="store_true", help="leave the testnet (and the dashboard, when installed) "
                   "running at the end and print how to reach and stop them")

    p = add_command(sub, "version", commands.delegate("cli.version", "version", "version"), "Print the fbci version, Python version and platform.")
    p.add_argument("--json", action="store_true", help="print JSON")

    dashboard.register(sub)
    consent_audit.add_commands(sub)
    gov.add_commands(sub)
    return parser


def _model_version(text: str) -> int | None:
    """argparse type of every --model-version: a version number, or ``latest`` (None)."""
    if text == "latest":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be a version number or 'latest'")
    return int(text)


def _read(attr: str, command: str) -> Callable[[argparse.Namespace], int | None]:
    return commands.delegate("cli.read", attr, command)


def _read_options(p: argparse.ArgumentParser) -> None:
    _rpc_options(p, many=False)
    p.add_argument("--key", metavar="KEY", help="key that signs private reads: a file or a name in HOME/keys "
                   "(default: the home's hospital, gateway or admin key, the first it holds)")
    p.add_argument("--json", action="store_true", help="print the chain's typed answer as JSON instead of a table")


def _rpc_options(p: argparse.ArgumentParser, *, many: bool) -> None:
    add_home(p, required=False, what="home directory: its RPC address and keys/ are used as defaults")
    p.add_argument("--rpc", action="append" if many else None, metavar="URL",
                   help=f"node RPC URL{' (repeatable)' if many else ''} (default: from --home, else {DEFAULT_RPC})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2); argparse has printed why
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        result = args.handler(args)
    except NotAvailable as exc:
        print(f"error[{exc.code} {exc.reason}]: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except FbciError as exc:
        print(f"error[{exc.code} {exc.reason}]: {exc.message}", file=sys.stderr)
        return next((status for cls, status in EXIT_STATUS if isinstance(exc, cls)), EXIT_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.filename is None:
            return _internal_error(exc)
        err = StorageError(f"{exc.filename}: {exc.strerror or exc}")
        print(f"error[{err.code} {err.reason}]: {err.message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        return _internal_error(exc)
    return 0 if result is None else int(result)


def _internal_error(exc: Exception) -> int:
    if os.environ.get("FBCI_DEBUG") == "1":
        traceback.print_exc()
    print(f"internal error: {type(exc).__name__}: {str(exc)[:300]} (set FBCI_DEBUG=1 for the traceback)",
          file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
