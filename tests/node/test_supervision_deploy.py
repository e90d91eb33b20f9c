"""The systemd unit in deploy/ parses, restarts a failed validator, gives it the limits it needs, and runs
the real ``fbci node start`` command (the same parser the CLI uses resolves its arguments)."""

from __future__ import annotations

import configparser
import shlex
import tomllib
from pathlib import Path

from cli import commands
from cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "fbci-validator.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",),
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(), source=str(UNIT))
    return parser


def test_the_unit_restarts_a_failed_validator_with_the_limits_it_needs() -> None:
    unit = _unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["Restart"] == "on-failure"  # crash-only: a failed task exits 1, systemd starts it again
    assert int(service["LimitNOFILE"]) >= 16_384  # peer links, RPC clients and LevelDB's tables
    assert service["KillSignal"] == "SIGTERM" and service["Type"] == "simple"
    assert int(unit["Unit"]["StartLimitBurst"]) >= 1  # a start that cannot succeed does not loop for ever
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_runs_fbci_node_start_on_its_home() -> None:
    service = _unit()["Service"]
    env = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))
    argv = shlex.split(service["ExecStart"].replace("${FBCI_HOME}", env["FBCI_HOME"]))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name == "fbci" and scripts["fbci"] == "cli.main:main"
    args = build_parser().parse_args(argv[1:])
    assert args.handler is commands.node_start and args.home == env["FBCI_HOME"]
    assert not args.accept_wal_loss  # accepting a lost WAL is an operator's decision, never a unit default
    assert env["FBCI_HOME"] in service["ReadWritePaths"].split()
