"""Governance and key rotation on a real 4-validator testnet, over JSON-RPC, driven by the ``fbci`` CLI.

Genesis gives each hospital its own admin key (``admin0``..``admin3``, members
of governance, more than 2/3 needed). A new hospital runs ``fbci keys gen``;
one admin's ``acl.register`` is refused and pointed at ``fbci gov propose``;
admin0 proposes, admin1 approves (not enough: the new key still cannot
transact), admin2 approves and the account exists, and it transacts;
``fbci gov list`` shows who approved and who is missing. Then a hospital
rotates its key with ``fbci gov rotate-key``: the old key is refused from the
next block and the new key works, with the rotation in ``key_history``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli.main as cli
from client.session import ChainSession, load_client_key
from core.crypto import PrivateKey
from core.errors import GovernanceRequired, KeyRotated, Unauthorized
from core.keyhistory import KEY_HISTORY, KeyHistoryParams
from genesis.home import HomePaths


def test_a_hospital_joins_by_quorum_and_a_key_rotates(testnet, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    net = testnet(4, governance=True)
    net.wait_ready(60, min_height=1)
    homes = [str(spec.home) for spec in net.specs]
    url = [spec.rpc_url for spec in net.specs]

    newcomer = tmp_path / "st-marys"
    assert cli.main(["keys", "gen", "--home", str(newcomer), "--name", "st-marys", "--roles", "hospital"]) == 0
    public = json.loads((newcomer / "public.json").read_text())
    new_key = PrivateKey.load(newcomer / "config" / "node_key.json")
    capsys.readouterr()

    with ChainSession(url[0], load_client_key("admin", homes[0]), verify=False) as alone:
        with pytest.raises(GovernanceRequired, match="fbci gov propose register"):
            alone.submit("acl.register", {"public_key": new_key.public_key.raw, "name": "st-marys",
                                          "roles": ["hospital"]})

    propose = ["gov", "propose", "register", "--home", homes[0], "--public-key", str(newcomer / "public.json"),
               "--name", "st-marys", "--role", "hospital", "--expires-in", "200"]
    assert cli.main(propose) == 0
    assert "proposal 1 (register)" in capsys.readouterr().out
    assert cli.main(["gov", "approve", "1", "--home", homes[1]]) == 0
    shown = capsys.readouterr()  # the member sees what it approves, read against commit certificates
    assert "2 of 3 approvals, still open" in shown.out
    assert "approving proposal 1: register name=st-marys roles=hospital" in shown.err
    with ChainSession(url[3], new_key, verify=False) as hospital:
        with pytest.raises(Unauthorized, match="not a registered account"):
            hospital.submit("test.echo", {"msg": b"too early"})
        assert cli.main(["gov", "approve", "1", "--home", homes[2]]) == 0
        assert "3 of 3 approvals, executed: register" in capsys.readouterr().out
        receipt = hospital.submit_commit("test.echo", {"msg": b"hello"}).receipt
        assert receipt.ok

    assert cli.main(["gov", "list", "--home", homes[3], "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (proposal,) = listed["proposals"]
    admin3 = load_client_key("admin", homes[3]).public_key.hex()
    assert proposal["proposal"]["status"] == "executed" and proposal["missing"] == [admin3]
    assert proposal["proposal"]["params"]["public_key"] == public["public_key"]
    assert listed["governance"]["required"] == 3 and listed["convictions"] == []
    assert cli.main(["gov", "list", "--home", homes[3]]) == 0
    assert "a decision needs 3 of 4" in capsys.readouterr().out

    old = load_client_key("hospital", homes[1])
    rotated = tmp_path / "hospital1-new.json"
    assert cli.main(["gov", "rotate-key", "--home", homes[1], "--key", "hospital", "--out", str(rotated)]) == 0
    assert "moved to key" in capsys.readouterr().out
    with ChainSession(url[2], old, verify=False) as stale:
        with pytest.raises(KeyRotated, match="rotated to"):
            stale.submit("test.echo", {"msg": b"old key"})
    with ChainSession(url[2], PrivateKey.load(rotated), verify=False) as fresh:
        assert fresh.submit_commit("test.echo", {"msg": b"new key"}).receipt.ok
        history = fresh.run(lambda c: c.query(KEY_HISTORY, KeyHistoryParams(public_key=old.public_key.raw)))
    assert [(c.old, c.new) for c in history] == [(old.public_key.raw, PrivateKey.load(rotated).public_key.raw)]
    assert HomePaths(Path(homes[1])).client_key("hospital").exists()  # the CLI never overwrote the old file
