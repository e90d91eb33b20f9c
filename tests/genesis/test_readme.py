"""genesis/README.md documents every chain parameter as the schema defines it, so the doc cannot drift."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import cli.main as cli
from genesis.schema import ChainParams

REPO = Path(__file__).resolve().parents[2]
README = REPO / "genesis" / "README.md"


def param_rows() -> dict[str, list[str]]:
    """The README's parameter table: name -> [default, unit, bounds, what it limits]."""
    text = README.read_text()
    section = text.split("## `--params`", 1)[1].split("### Rules between parameters", 1)[0]
    return {m.group(1): [cell.strip() for cell in m.group(2).split("|")]
            for m in re.finditer(r"^\| `([a-z_]+)` \|(.*)\|$", section, flags=re.M)}


def bound(field: object, name: str) -> int | None:
    values = [getattr(m, name) for m in field.metadata if getattr(m, name, None) is not None]  # type: ignore[attr-defined]
    return values[0] if values else None


def test_every_chain_parameter_is_documented_with_its_default_unit_and_meaning() -> None:
    rows = param_rows()
    assert set(rows) == set(ChainParams.model_fields), set(rows) ^ set(ChainParams.model_fields)
    for name, field in ChainParams.model_fields.items():
        default, unit, bounds, meaning = rows[name]
        assert default == str(field.default), (name, default, field.default)
        assert unit and len(meaning) > 20, name
        assert bounds == {(None, 0): "positive", (0, None): "0 or more"}[(bound(field, "ge"), bound(field, "gt"))], name
        assert bound(field, "le") == 2**31 - 1, name
    assert "at most 2^31 - 1 (2147483647)" in README.read_text()


def test_every_cross_field_rule_is_documented() -> None:
    source = inspect.getsource(ChainParams._consistent)
    checked = re.findall(r"raise FieldError\(\(\"([a-z_]+)\",\)", source)
    text = README.read_text()
    section = text.split("### Rules between parameters", 1)[1].split("\n## ", 1)[0]
    rules = re.findall(r"^\d+\. `([a-z_]+)[^`]*`", section, flags=re.M)
    assert rules == checked, (rules, checked)  # one numbered rule per check, in the schema's order


@pytest.mark.parametrize("override", [
    {"max_tx_bytes": 9_000_000},                       # rule 1
    {"mempool_max_bytes": 1000},                       # rule 2
    {"member_block_bytes": 1000},                      # rule 3
    {"member_window_bytes": 1_000_000},                # rule 4
    {"propose_delay_ms": 2000},                        # rule 5
    {"base_timeout_ticks": 1, "propose_delay_ms": 100},  # rule 6
])
def test_the_documented_rules_are_the_enforced_ones(override: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ChainParams(**override)


@pytest.mark.parametrize("command", ["init", "assemble"])
def test_the_params_help_points_at_this_readme(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["genesis", command, "--help"]) == 0
    paths = re.findall(r"see\s+([\w/]+\.md)", capsys.readouterr().out)
    assert paths and set(paths) == {"genesis/README.md"} and (REPO / paths[0]).is_file()
