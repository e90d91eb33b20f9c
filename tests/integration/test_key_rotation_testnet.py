"""A validator rotates its consensus key on a real 4-validator testnet, driven by the ``fbci`` CLI.

node3's operator makes a new key in a fresh home (``fbci keys gen --roles validator``) and sends
``fbci gov rotate-validator-key``, signed by the old key. The old-key process keeps running past the
effective height: the chain keeps committing, and no certificate from then on carries the old key, while
those before it still do. The operator restarts node3 with the new key (its ``node_key.json`` and
``public.json``); it syncs, signs certificates again, the old key's transactions are refused, and all four
validators hold one chain.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import cli.main as cli
from client.session import ChainSession
from core.crypto import PrivateKey
from core.errors import KeyRotated
from genesis.home import HomePaths
from tests.integration.load import assert_same_chain, heights, wait_heights, wait_until
from tests.integration.test_membership_testnet import signed_by

RESTART_S = 120  # a real process restarting and catching up on a loaded machine


def test_a_validator_rotates_its_key_and_restarts_with_it(testnet, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    net = testnet(4, governance=True)
    net.wait_ready(60, min_height=1)
    home = HomePaths(net.specs[3].home)
    url = net.specs[0].rpc_url
    public = json.loads(home.public.read_text())
    old = PrivateKey.load(home.node_key)
    fresh = tmp_path / "node3-new"
    assert cli.main(["keys", "gen", "--home", str(fresh), "--name", public["name"], "--roles", "validator",
                     "--p2p", public["p2p_address"]]) == 0
    new = HomePaths(fresh)
    new_key = json.loads(new.public.read_text())["public_key"]
    capsys.readouterr()

    assert cli.main(["gov", "rotate-validator-key", "--home", str(home.root), "--new-key", str(new.public)]) == 0
    out = capsys.readouterr().out
    found = re.search(rf"validator {public['name']} moves to key {new_key} at height \d+: .* decides nothing from "
                      r"height (\d+)", out)
    assert found is not None, out
    effective = int(found.group(1))

    # The old-key process still runs; from the effective height it is no validator (its links are cut, as a
    # removed validator's are), and the other three, a quorum of the new set, keep committing.
    wait_heights(net, effective + 2, 60, nodes=[0, 1, 2])
    assert signed_by(url, old.public_key.hex(), range(max(1, effective - 3), effective))
    # certificates of heights effective.. (block effective's LastCommit is effective - 1's, signed by it)
    assert not signed_by(url, old.public_key.hex(), range(effective + 1, effective + 3))

    shutil.copy(new.node_key, home.node_key)
    shutil.copy(new.public, home.public)
    net.restart(3)
    back = max(heights(net, [0, 1, 2]).values())
    wait_until(lambda: signed_by(url, new_key, range(back, max(heights(net, [0]).values()) + 1)), RESTART_S,
               "node3 signing with its new key")
    with ChainSession(url, old, verify=False) as stale:
        with pytest.raises(KeyRotated, match="rotated to"):
            stale.submit("test.echo", {"msg": b"old key"})
    wait_heights(net, back + 1, RESTART_S)
    assert assert_same_chain(net) > back
