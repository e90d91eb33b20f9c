"""``fbci gov``: bad input is refused before any call to a node (the rpc address is unreachable on purpose)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import cli.main as cli

NOWHERE = "http://127.0.0.1:9"


@pytest.mark.parametrize(("argv", "message"), [
    (["gov", "propose", "register", "--public-key", "zz", "--name", "a", "--role", "hospital"],
     "--public-key: 'zz' is neither 64 hex digits nor a public.json file"),
    (["gov", "propose", "rotate", "--public-key", "ab" * 32, "--new-public-key", "ab"],
     "--new-public-key: 'ab' is neither"),
    (["gov", "propose", "add-model", "--spec", "missing.json"], "missing.json"),
    (["gov", "approve", "3", "--cosignature", "cosig.json"], "--cosignature cosig.json: signs proposal 2, not 3"),
    (["gov", "approve", "2", "--cosignature", "junk.json"], "not a co-signature"),
    (["gov", "propose", "params-set", "--param", "max_tx_bytes", "--param", "max_block_txs", "--value", "9"],
     "give one --value for each --param (2 --param, 1 --value)"),
    (["gov", "propose", "params-set", "--param", "max_tx_bytes", "--value", "-1"],
     "--value for max_tx_bytes: '-1' is not a whole number"),
    (["gov", "propose", "params-set", "--param", "max_tx_bytes", "--value", "1", "--param", "max_tx_bytes",
      "--value", "2"], "--param max_tx_bytes is given twice"),
    (["gov", "propose", "validator-rotate-key", "--public-key", "ab" * 32, "--new-key", "missing.json"],
     "--new-key: 'missing.json' is not the public.json of the validator's new key"),
])
def test_bad_input_is_a_clear_error_before_any_call(argv: list[str], message: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cosig.json").write_text(json.dumps({"proposal": 2, "member": "ab" * 32, "signature": "cd" * 64}))
    (tmp_path / "junk.json").write_text(json.dumps({"proposal": 2}))
    assert cli.main([*argv, "--rpc", NOWHERE, "--key", "k"] if argv[1] != "propose" else
                    [*argv[:2], "--rpc", NOWHERE, "--key", "k", *argv[2:]]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "unreachable" not in err.lower()


def test_expiry_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gov", "propose", "grant", "--public-key", "ab" * 32, "--role", "gateway",
                     "--expires-in", "0"]) == 2
    assert "--expires-in: must be a number of blocks from 1 to 100000" in capsys.readouterr().err


def test_rotating_a_validator_key_needs_its_home(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gov", "rotate-validator-key", "--rpc", NOWHERE, "--new-key", "public.json"]) == 1
    assert "--home: the validator's home" in capsys.readouterr().err


def test_a_lost_validator_key_is_proposed_with_the_new_keys_public_part(tmp_path: Path) -> None:
    from cli.gov import _params

    assert cli.main(["keys", "gen", "--home", str(tmp_path / "new"), "--name", "node3", "--roles", "validator",
                     "--p2p", "127.0.0.1:26656"]) == 0
    public = json.loads((tmp_path / "new" / "public.json").read_text())
    args = argparse.Namespace(gov_action="validator-rotate-key", public_key="ab" * 32,
                              new_key=str(tmp_path / "new" / "public.json"))
    assert _params(args) == ("validator.rotate_key", {"public_key": bytes.fromhex("ab" * 32),
                                                      "new_public_key": bytes.fromhex(public["public_key"])})
