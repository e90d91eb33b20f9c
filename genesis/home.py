"""A validator's home directory: where each file lives, and the node config schema.

The schema lives here rather than in ``node/`` because ``genesis`` writes the
configs (``fbci genesis init`` and ``install``) and may not import ``node``;
``node.config`` re-exports it and adds the loading the validator does at
start-up. The home's own path is never stored in the config, so a home
directory can be moved or copied to another machine and still work::

    HOME/
      public.json            the shareable part: name, public key, addresses, roles
      config/node_key.json   Ed25519 private key, mode 0600, never leaves the machine
      config/config.json     NodeConfig: listen addresses, peers, data dir, logging
      config/genesis.json    the chain's genesis document
      keys/<role>.json       client keys for accounts this hospital runs (0600)
      data/                  block, state and WAL stores (created by the node)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, model_validator

from genesis.types import STRICT, DialAddress, ListenAddress, Name, PublicKeyHex, split_address
from core.errors import InvalidInput
from genesis.validation import FieldError, dump_json, read_json_file, validate_model, write_file_atomic


@dataclass(frozen=True)
class HomePaths:
    root: Path

    @property
    def public(self) -> Path:
        return self.root / "public.json"

    @property
    def node_key(self) -> Path:
        return self.root / "config" / "node_key.json"

    @property
    def config(self) -> Path:
        return self.root / "config" / "config.json"

    @property
    def genesis(self) -> Path:
        return self.root / "config" / "genesis.json"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def client_key(self, name: str) -> Path:
        return self.keys_dir / f"{name}.json"


class PeerInfo(BaseModel):
    model_config = STRICT

    name: Name
    public_key: PublicKeyHex
    """The peer's node key; a connection is kept only if the handshake proves this key."""
    address: DialAddress


def _relative_dir(text: str) -> str:
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a path inside the home directory (relative, no '..')")
    return text


class RpcTls(BaseModel):
    """Serve JSON-RPC over TLS 1.3; paths are inside the home directory."""

    model_config = STRICT

    cert_file: Annotated[str, AfterValidator(_relative_dir)]
    """The server's certificate chain (PEM)."""
    key_file: Annotated[str, AfterValidator(_relative_dir)]
    """Its private key (PEM); keep it mode 0600 like the node key."""
    client_ca_file: Annotated[str, AfterValidator(_relative_dir)] | None = None
    """When set, every client must present a certificate this CA signed (mutual TLS)."""


class NodeConfig(BaseModel):
    """What may differ between validators of one chain; what must not lives in genesis."""

    model_config = STRICT

    name: Name
    """This validator's name (moniker), as in the genesis validator set."""
    p2p_listen: ListenAddress
    """Where this validator accepts connections from its peers."""
    rpc_listen: ListenAddress
    """Where the JSON-RPC server (and its /metrics) listens for clients."""
    peers: list[PeerInfo] = []
    """The other validators this one dials."""
    data_dir: Annotated[str, AfterValidator(_relative_dir)] = "data"
    """Stores, relative to the home directory."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics: bool = True
    """Serve Prometheus metrics at the RPC address's /metrics."""
    rpc_tls: RpcTls | None = None
    """Serve JSON-RPC (and /metrics) over TLS instead of plain HTTP."""
    state_sync: bool = False
    """On an empty home, restore the state from a peer's snapshot (verified against a certified header)
    instead of replaying every block since genesis (``fbci node start --state-sync`` sets it too)."""

    @model_validator(mode="after")
    def _consistent(self) -> NodeConfig:
        for key in ("name", "public_key", "address"):
            seen: set[str] = set()
            for i, peer in enumerate(self.peers):
                value = getattr(peer, key)
                if value in seen:
                    raise FieldError(("peers", i, key), f"{value!r} appears twice among the peers")
                seen.add(value)
        if self.name in {p.name for p in self.peers}:
            raise FieldError(("peers",), f"lists this node ({self.name!r}) as its own peer")
        if split_address(self.p2p_listen)[1] == split_address(self.rpc_listen)[1]:
            raise FieldError(("rpc_listen",), "must use a different port from p2p_listen")
        return self

    def rpc_url(self) -> str:
        """The URL a client on this machine uses to reach this node's RPC server."""
        host, port = split_address(self.rpc_listen)
        host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
        return f"{'https' if self.rpc_tls is not None else 'http'}://{host}:{port}"


def write_config(config: NodeConfig, paths: HomePaths) -> None:
    # A config without TLS or state sync is written as before those fields existed.
    exclude = {name for name, unset in (("rpc_tls", config.rpc_tls is None), ("state_sync", not config.state_sync))
               if unset} or None
    write_file_atomic(paths.config, dump_json(config.model_dump(mode="json", exclude=exclude)))


def load_config(home: Path) -> NodeConfig:
    """``HOME/config/config.json``; a bad file is an :class:`InvalidInput` naming the field."""
    path = HomePaths(home).config
    return validate_model(NodeConfig, read_json_file(path, error=InvalidInput), source=str(path), error=InvalidInput)
