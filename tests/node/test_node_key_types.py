"""A validator starts only with a key file of the type genesis declares for it (hybrid or Ed25519)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.crypto import HybridPrivateKey, PrivateKey, load_signing_key
from core.errors import InvalidInput
from genesis.create import init_network
from genesis.home import HomePaths
from node.config import load_home


def test_a_node_refuses_a_key_file_of_another_type_than_genesis_declares(tmp_path: Path) -> None:
    net = init_network(4, tmp_path / "net", hybrid=True)
    home = net.homes[0]
    assert isinstance(load_home(home).node_key, HybridPrivateKey)
    hybrid = load_signing_key(HomePaths(home).node_key)
    assert isinstance(hybrid, HybridPrivateKey)
    hybrid.ed25519.save(HomePaths(home).node_key)  # the same identity, without its ML-DSA half
    with pytest.raises(InvalidInput, match="declares this validator's key as ed25519\\+ml-dsa-65"):
        load_home(home)
    other = HybridPrivateKey(hybrid._seed, bytes(32))  # the same Ed25519 half, another ML-DSA half
    other.save(HomePaths(home).node_key)
    with pytest.raises(InvalidInput, match="another ML-DSA half"):
        load_home(home)
    assert isinstance(load_home(init_network(1, tmp_path / "plain").homes[0]).node_key, PrivateKey)
