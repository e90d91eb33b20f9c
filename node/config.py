"""What a validator reads from its home at start-up, checked against each other before anything runs.

The config schema itself is :class:`genesis.home.NodeConfig` (``genesis``
writes and reads configs and may not import ``node``). This module adds what
only the running node needs: the cross-checks that catch a home put
together from mismatched pieces (a key that is not a validator, a peer whose
key differs from genesis) before the node opens a store or a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.crypto import AnySigningKey, load_signing_key
from core.errors import FbciError, InvalidInput
from genesis.home import HomePaths, NodeConfig, PeerInfo, load_config
from genesis.keys import show_identity
from genesis.schema import GenesisDoc, load_genesis

__all__ = ["HomePaths", "NodeConfig", "NodeHome", "PeerInfo", "load_config", "load_home"]


@dataclass(frozen=True)
class NodeHome:
    """Everything a validator needs from its home directory, already validated together."""

    paths: HomePaths
    config: NodeConfig
    genesis: GenesisDoc
    node_key: AnySigningKey

    @property
    def data_path(self) -> Path:
        return self.paths.root / self.config.data_dir


def _joins(paths: HomePaths) -> bool:
    """A key genesis does not list may still be a validator the consortium added since (``validator.add``):
    a home whose public part says role validator starts, syncs, and votes once the chain's set holds it. A
    peer genesis does not list is likewise left to the handshake, which asks the chain's current set."""
    try:
        return "validator" in show_identity(paths.root).roles
    except (FbciError, OSError):
        return False


def load_home(home: Path) -> NodeHome:
    if not home.is_dir():
        raise InvalidInput(f"{home}: home directory does not exist (create one with 'fbci genesis init' "
                           "or 'fbci keys gen' + 'fbci genesis install')")
    paths = HomePaths(home)
    config = load_config(home)
    genesis = load_genesis(paths.genesis)
    key = load_signing_key(paths.node_key)
    validators = {v.public_key: v for v in genesis.validators}
    me = validators.get(key.public_key.raw.hex())
    if me is None and not _joins(paths):
        raise InvalidInput(f"{paths.node_key}: this key is not in the validator set of {paths.genesis}")
    if me is not None and me.verifying_key() != key.public_key:
        raise InvalidInput(f"{paths.node_key}: genesis declares this validator's key as {me.key_type}, "
                           f"but the key file holds a {key.public_key.key_type.value} key (or another ML-DSA half)")
    if me is not None and me.name != config.name:
        raise InvalidInput(f"{paths.config}: name is {config.name!r} but genesis names this key {me.name!r}")
    for i, peer in enumerate(config.peers):
        known = validators.get(peer.public_key)
        named = next((v for v in genesis.validators if v.name == peer.name), None)
        if (known is not None and known.name != peer.name) or (known is None and named is not None):
            raise InvalidInput(f"{paths.config}: peers[{i}] ({peer.name!r}) is not a validator of {paths.genesis} "
                               "with that name and public_key")
        if peer.public_key == key.public_key.raw.hex():
            raise InvalidInput(f"{paths.config}: peers[{i}] is this node's own key")
    return NodeHome(paths=paths, config=config, genesis=genesis, node_key=key)
