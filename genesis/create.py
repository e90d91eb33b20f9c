"""Creating a chain: the one-machine shortcut, and the production path from public parts.

``init_network`` generates every key on one machine and lays out one home per
validator: for tests, demos and ``fbci testnet``. A real consortium never
moves a private key: each hospital runs ``fbci keys gen``, the public parts
are collected, ``assemble`` turns them into the genesis document and each
hospital runs ``install_genesis`` on its own home. ``init_network`` builds its
document through ``assemble`` too, so both paths give the same genesis for the
same keys.

Ports are deterministic (p2p = base_port + 2*i, rpc = base_port + 2*i + 1) so
scripts and tests know where node i listens without reading its config.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.crypto import AnySigningKey, HybridPrivateKey, KeyType, PrivateKey
from core.errors import InvalidInput
from genesis.home import HomePaths, NodeConfig, write_config
from genesis.keys import PublicPart, load_public_part, public_part_of, show_identity
from genesis.schema import ChainParams, GenesisDoc, ValidatorInfo, genesis_from_obj, write_genesis
from genesis.types import split_address
from genesis.validation import validate_model, write_file_atomic

DEFAULT_CHAIN_ID = "fbci-local"
DEFAULT_BASE_PORT = 26600
DEFAULT_RPC = f"http://127.0.0.1:{DEFAULT_BASE_PORT + 1}"
"""Node 0's JSON-RPC of a network that ``init_network`` made with the default base port."""
ADMIN_NAME = "admin"


@dataclass(frozen=True)
class Network:
    """What ``init_network`` wrote."""

    genesis: GenesisDoc
    genesis_path: Path
    homes: list[Path]


def _name_order(name: str) -> tuple[list[Any], str]:
    """Numbers inside names compare as numbers, so node2 comes before node10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)], name


def assemble(chain_id: str, parts: Sequence[PublicPart], *, genesis_time_ms: int,
             params: ChainParams | None = None, app_state: dict[str, Any] | None = None) -> GenesisDoc:
    """The genesis document for these participants, independent of the order the parts arrive in.

    Anyone holding the same public parts and arguments builds a document with
    the same hash, so each hospital can check the genesis it is given.
    """
    ordered = sorted(parts, key=lambda p: _name_order(p.name))
    obj = {
        "chain_id": chain_id,
        "genesis_time_ms": genesis_time_ms,
        "validators": [{"name": p.name, "public_key": p.public_key, "p2p_address": p.p2p_address,
                        **_key_type_of(p)} for p in ordered if "validator" in p.roles],
        "params": (params or ChainParams()).model_dump(mode="json"),
        "accounts": [{"name": p.name, "public_key": p.public_key, "roles": list(p.roles)} for p in ordered],
        "app_state": app_state if app_state is not None else {},
    }
    return genesis_from_obj(obj, source="assembled genesis")


def _key_type_of(part: PublicPart) -> dict[str, str]:
    """The genesis key-type fields of a validator's part: none for Ed25519, so its entry is as before."""
    if part.ml_dsa_public_key is None:
        return {}
    return {"key_type": KeyType.HYBRID.value, "ml_dsa_public_key": part.ml_dsa_public_key}


def node_config_for(doc: GenesisDoc, public_key: str, *, p2p_listen: str | None = None,
                    rpc_listen: str | None = None, source: str = "config.json",
                    joining: PublicPart | None = None) -> NodeConfig:
    """The config of the validator holding ``public_key``: every other validator is its peer.

    ``joining``: the public part of a hospital's validator that is not in genesis, because it joins by a
    consortium decision (``fbci gov propose validator-add``); its peers are genesis's validators, and the
    chain's own validator set takes over once it has synced."""
    me = next((v for v in doc.validators if v.public_key == public_key), None)
    if me is None and joining is not None and joining.p2p_address is not None and "validator" in joining.roles:
        me = ValidatorInfo.model_validate({"name": joining.name, "public_key": joining.public_key,
                                           "p2p_address": joining.p2p_address, **_key_type_of(joining)})
    if me is None:
        raise InvalidInput(f"key {public_key[:16]}... is not in the validator set of chain {doc.chain_id!r}")
    host, port = split_address(me.p2p_address)
    obj = {
        "name": me.name,
        "p2p_listen": p2p_listen or me.p2p_address,
        "rpc_listen": rpc_listen or f"{host}:{port + 1}",
        "peers": [{"name": v.name, "public_key": v.public_key, "address": v.p2p_address}
                  for v in doc.validators if v.public_key != me.public_key],
    }
    return validate_model(NodeConfig, obj, source=source, error=InvalidInput)


def install_genesis(home: Path, doc: GenesisDoc, *, p2p_listen: str | None = None,
                    rpc_listen: str | None = None) -> NodeConfig:
    """Make a home made by ``fbci keys gen`` ready to run: its genesis copy and its config.

    Refuses a home that already has either file: its data may belong to
    another chain, and its config may hold edits worth keeping.
    """
    paths = HomePaths(home)
    part = show_identity(home)
    for existing in (paths.genesis, paths.config):
        if existing.exists():
            raise InvalidInput(f"{existing} already exists; this home is already set up")
    config = node_config_for(doc, part.public_key, p2p_listen=p2p_listen,
                             rpc_listen=rpc_listen or part.rpc_address, source=str(paths.config), joining=part)
    write_genesis(doc, paths.genesis)
    write_config(config, paths)
    return config


def _check_counts(n_validators: int, hospitals: int, gateways: int, base_port: int) -> None:
    if n_validators < 1:
        raise InvalidInput("validators: need at least 1")
    if hospitals < 0 or gateways < 0:
        raise InvalidInput("hospitals and gateways: must be >= 0")
    if base_port < 1024 or base_port + 2 * n_validators - 1 > 65535:
        raise InvalidInput(f"base_port: {n_validators} validators need ports {base_port}.."
                           f"{base_port + 2 * n_validators - 1}, which must lie in 1024..65535")


def init_network(n_validators: int, out_dir: Path, *, chain_id: str = DEFAULT_CHAIN_ID,
                 base_port: int = DEFAULT_BASE_PORT, hospitals: int | None = None, gateways: int | None = None,
                 host: str = "127.0.0.1", params: ChainParams | None = None,
                 app_state: dict[str, Any] | None = None, genesis_time_ms: int | None = None,
                 hybrid: bool = False, governance: bool = False, hosts: Sequence[str] | None = None) -> Network:
    """Generate all keys and write ``out_dir/genesis.json`` plus one home per validator.

    Accounts: validator ``node{i}``; ``admin`` (key in node0's keys/);
    ``hospital{j}`` and ``gateway{j}`` (default one of each per validator),
    the j-th kept by node ``j % n``: its first of each role as
    ``keys/hospital.json`` / ``keys/gateway.json``, any more as
    ``keys/hospital{j}.json``. ``hybrid``: every validator gets an Ed25519 + ML-DSA-65 key.
    ``governance``: instead of one ``admin``, each node's hospital gets its own ``admin{i}``
    (``keys/admin.json`` of node i), and ``app_state.governance`` makes them the members who decide
    by more than 2/3 (unless ``app_state`` already declares governance).
    ``app_state.affiliations`` (unless given) lists ``gateway{j}`` and ``node{j}`` under ``hospital{j}``:
    the accounts whose alerts a clinician of that hospital reads.
    ``hosts``: validator i's own address instead of ``host`` (validators on separate hosts).
    """
    hospitals = n_validators if hospitals is None else hospitals
    gateways = n_validators if gateways is None else gateways
    _check_counts(n_validators, hospitals, gateways, base_port)
    if hosts is not None and len(hosts) != n_validators:
        raise InvalidInput(f"hosts: {len(hosts)} given for {n_validators} validators")
    addresses = list(hosts) if hosts is not None else [host] * n_validators
    homes = [out_dir / f"node{i}" for i in range(n_validators)]
    for existing in [out_dir / "genesis.json", *homes]:
        if existing.exists():
            raise InvalidInput(f"{existing} already exists; choose an empty --out directory")

    node_keys: list[AnySigningKey] = [HybridPrivateKey.generate() if hybrid else PrivateKey.generate() for _ in range(n_validators)]
    parts = [public_part_of(key, name=f"node{i}", roles=["validator"],
                            p2p_address=f"{addresses[i]}:{base_port + 2 * i}",
                            rpc_address=f"{addresses[i]}:{base_port + 2 * i + 1}")
             for i, key in enumerate(node_keys)]
    # (home index, file stem, key) for every client account.
    client_files: list[tuple[int, str, PrivateKey]] = []
    admins = [f"{ADMIN_NAME}{i}" for i in range(n_validators)] if governance else [ADMIN_NAME]
    clients = [(name, "admin", i) for i, name in enumerate(admins)]
    if governance:
        app_state = {"governance": {"members": admins}, **(app_state or {})}
    app_state = {"affiliations": {f"hospital{j}": [*([f"gateway{j}"] if j < gateways else []),
                                                   *([f"node{j}"] if j < n_validators else [])]
                                  for j in range(hospitals)}, **(app_state or {})}
    clients += [(f"hospital{j}", "hospital", j) for j in range(hospitals)]
    clients += [(f"gateway{j}", "gateway", j) for j in range(gateways)]
    for name, role, j in clients:
        key = PrivateKey.generate()
        parts.append(public_part_of(key, name=name, roles=[role]))
        stem = role if j < n_validators else name
        client_files.append((j % n_validators, stem, key))

    doc = assemble(chain_id, parts, genesis_time_ms=_now_ms() if genesis_time_ms is None else genesis_time_ms,
                   params=params, app_state=app_state)
    write_genesis(doc, out_dir / "genesis.json")
    for i, home in enumerate(homes):
        paths = HomePaths(home)
        node_keys[i].save(paths.node_key)
        write_file_atomic(paths.public, parts[i].to_json())
        write_genesis(doc, paths.genesis)
        write_config(node_config_for(doc, parts[i].public_key, source=str(paths.config)), paths)
    for i, stem, key in client_files:
        key.save(HomePaths(homes[i]).client_key(stem))
    return Network(genesis=doc, genesis_path=out_dir / "genesis.json", homes=homes)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def load_parts(paths: Sequence[Path]) -> list[PublicPart]:
    """Public parts from files; the same file given twice is refused rather than silently merged."""
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise InvalidInput("the same public.json is given more than once")
    return [load_public_part(p) for p in paths]

