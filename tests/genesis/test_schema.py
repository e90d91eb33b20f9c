"""The genesis schema accepts good documents and refuses each bad field by name."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidGenesis
from genesis.create import assemble
from genesis.schema import ChainParams, GenesisDoc, genesis_from_obj, load_genesis, parse_genesis, write_genesis
from tests.genesis.samples import GENESIS_TIME_MS, sample_parts

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A mutation setting the value at a dotted path ("validators.0.name"), creating the last key."""
    def mutate(d: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _delete(path: str) -> Callable[[Doc], None]:
    def mutate(d: Doc) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        del target[int(last) if isinstance(target, list) else last]
    return mutate


def _duplicate_validator_key(d: Doc) -> None:
    d["validators"][1]["public_key"] = d["validators"][0]["public_key"]


def _validator_without_account(d: Doc) -> None:
    d["accounts"] = [a for a in d["accounts"] if a["name"] != "node2"]


def _account_with_validator_role_not_in_set(d: Doc) -> None:
    d["accounts"][[a["name"] for a in d["accounts"]].index("hospital0")]["roles"].append("validator")


def _no_admin(d: Doc) -> None:
    d["accounts"] = [a for a in d["accounts"] if a["name"] != "admin"]


def _validator_renamed(d: Doc) -> None:
    d["validators"][0]["name"] = "other"


MUTATIONS: list[tuple[str, Callable[[Doc], None], str]] = [
    ("chain id missing", _delete("chain_id"), "chain_id: is required"),
    ("chain id upper case", _set("chain_id", "Fbci"), "chain_id: must be 1-64"),
    ("chain id too long", _set("chain_id", "a" * 65), "chain_id: must be 1-64"),
    ("chain id not a string", _set("chain_id", 7), "chain_id: must be a string"),
    ("time negative", _set("genesis_time_ms", -1), "genesis_time_ms: must be >= 0"),
    ("time a float", _set("genesis_time_ms", 1.0), "genesis_time_ms: must be an integer"),
    ("time a bool", _set("genesis_time_ms", True), "genesis_time_ms: must be an integer"),
    ("time a string", _set("genesis_time_ms", "1"), "genesis_time_ms: must be an integer"),
    ("unknown top field", _set("extra", 1), "extra: is not a known field"),
    ("no validators", _set("validators", []), "validators: needs at least 1"),
    ("validators not a list", _set("validators", {}), "validators: must be a list"),
    ("validator name bad", _set("validators.1.name", "Node 1"), "validators[1].name: must be 1-32"),
    ("validator key short", _set("validators.1.public_key", "ab" * 31), "validators[1].public_key: must be an Ed25519"),
    ("validator key upper", _set("validators.1.public_key", "AB" * 32), "validators[1].public_key: must be an Ed25519"),
    ("validator address no port", _set("validators.2.p2p_address", "127.0.0.1"), "validators[2].p2p_address: must be HOST:PORT"),
    ("validator port 0", _set("validators.2.p2p_address", "127.0.0.1:0"), "validators[2].p2p_address: port must be"),
    ("validator port huge", _set("validators.2.p2p_address", "h:70000"), "validators[2].p2p_address: port must be"),
    ("validator bad ipv4", _set("validators.2.p2p_address", "300.1.1.1:5"), "validators[2].p2p_address: '300.1.1.1' is not an IPv4"),
    ("validator wildcard", _set("validators.2.p2p_address", "0.0.0.0:5"), "validators[2].p2p_address: 0.0.0.0 is a listen-only"),
    ("validator extra field", _set("validators.0.power", 10), "validators[0].power: is not a known field"),
    ("duplicate validator name", _set("validators.1.name", "node0"), "validators[1].name: 'node0' is already used"),
    ("duplicate validator key", _duplicate_validator_key, "validators[1].public_key: '"),
    ("duplicate p2p address", _set("validators.3.p2p_address", "127.0.0.1:26600"), "validators[3].p2p_address"),
    ("validator without account", _validator_without_account, "validators[2].public_key: every validator needs an account"),
    ("validator renamed", _validator_renamed, "validators[0].name: is 'other' but the account"),
    ("stray validator role", _account_with_validator_role_not_in_set, "roles: account 'hospital0' has role 'validator'"),
    ("no admin", _no_admin, "accounts: at least one account needs role 'admin'"),
    ("unknown role", _set("accounts.0.roles", ["doctor"]), "accounts[0].roles[0]: must be one of"),
    ("no roles", _set("accounts.0.roles", []), "accounts[0].roles: needs at least 1"),
    ("repeated role", _set("accounts.0.roles", ["admin", "admin"]), "accounts[0].roles: lists a role more than once"),
    ("duplicate account name", _set("accounts.1.name", "admin"), "accounts[1].name: 'admin' is already used"),
    ("account missing key", _delete("accounts.1.public_key"), "accounts[1].public_key: is required"),
    ("params not an object", _set("params", []), "params: must be an object"),
    ("max_tx_bytes zero", _set("params.max_tx_bytes", 0), "params.max_tx_bytes: must be > 0"),
    ("max_tx_bytes above block", _set("params.max_tx_bytes", 9 * 1024 * 1024), "params.max_tx_bytes: must be <= max_block_bytes"),
    ("max_tx_bytes above mempool", _set("params.mempool_max_bytes", 1000), "params.max_tx_bytes: must be <= mempool_max_bytes"),
    ("max_block_txs negative", _set("params.max_block_txs", -3), "params.max_block_txs: must be > 0"),
    ("block interval huge", _set("params.block_interval_ms", 2**40), "params.block_interval_ms: must be <= 2147483647"),
    ("propose delay negative", _set("params.propose_delay_ms", -1), "params.propose_delay_ms: must be >= 0"),
    ("propose delay above interval", _set("params.propose_delay_ms", 1500), "params.propose_delay_ms: must be <= block_interval_ms"),
    ("timeout below propose delay", _set("params.tick_ms", 1), "params.base_timeout_ticks: base_timeout_ticks * tick_ms"),
    ("tick zero", _set("params.tick_ms", 0), "params.tick_ms: must be > 0"),
    ("drift zero", _set("params.max_clock_drift_ms", 0), "params.max_clock_drift_ms: must be > 0"),
    ("rpc rate zero", _set("params.rpc_requests_per_second", 0), "params.rpc_requests_per_second: must be > 0"),
    ("rpc burst string", _set("params.rpc_burst", "10"), "params.rpc_burst: must be an integer"),
    ("unknown param", _set("params.gas", 1), "params.gas: is not a known field"),
    ("app_state not an object", _set("app_state", [1]), "app_state: must be an object"),
    ("app_state float", _set("app_state.models.0.lr", 0.1), "app_state.models[0].lr: floats are not allowed"),
    ("app_state huge int", _set("app_state.models.0.dim", 2**64), "app_state.models[0].dim: integer is outside"),
    ("app_state too deep", _set("app_state.deep", json.loads("[" * 20 + "]" * 20)), "app_state.deep"),
]


@pytest.mark.parametrize(("mutation", "expected"), [(m, e) for _, m, e in MUTATIONS],
                         ids=[name for name, _, _ in MUTATIONS])
def test_each_bad_field_is_refused_by_name(doc_json: Doc, mutation: Callable[[Doc], None], expected: str) -> None:
    mutation(doc_json)
    with pytest.raises(InvalidGenesis) as info:
        parse_genesis(json.dumps(doc_json))
    assert info.value.message.startswith("genesis.json: ")
    assert expected in info.value.message


def test_the_sample_and_the_defaults_are_accepted(doc: GenesisDoc, doc_json: Doc) -> None:
    assert parse_genesis(json.dumps(doc_json)) == doc
    del doc_json["params"], doc_json["app_state"]
    minimal = parse_genesis(json.dumps(doc_json))
    assert minimal.params == ChainParams() and minimal.app_state == {}


def test_hash_ignores_layout_but_not_content(doc: GenesisDoc, doc_json: Doc) -> None:
    reordered = json.dumps(dict(reversed(list(doc_json.items()))), separators=(",", ":"))
    assert parse_genesis(reordered).hash() == doc.hash()
    assert len(doc.hash()) == 32
    doc_json["params"]["max_block_txs"] += 1
    assert parse_genesis(json.dumps(doc_json)).hash() != doc.hash()


@pytest.mark.parametrize("text", [b"", b"{", b"[]", b"null", b'{"chain_id": NaN}', b'{"a": Infinity}',
                                  b'{"chain_id": "a", "chain_id": "b"}', b"\xff\xfe\x00", b"[" * 100_000])
def test_text_that_is_not_a_genesis_object_is_refused(text: bytes) -> None:
    with pytest.raises(InvalidGenesis, match="^genesis.json: "):
        parse_genesis(text)


def test_load_and_write_round_trip_and_name_the_file(doc: GenesisDoc, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_genesis(doc, path)
    assert load_genesis(path) == doc
    with pytest.raises(InvalidGenesis, match="does not exist"):
        load_genesis(tmp_path / "missing.json")
    with pytest.raises(InvalidGenesis, match="is a directory"):
        load_genesis(tmp_path)
    path.write_text(path.read_text().replace('"max_tx_bytes": 1048576', '"max_tx_bytes": 0'))
    with pytest.raises(InvalidGenesis, match=r"genesis.json: params.max_tx_bytes: must be > 0"):
        load_genesis(path)


def test_many_errors_are_summarised(doc_json: Doc) -> None:
    for field in ("max_tx_bytes", "max_block_txs", "tick_ms", "rpc_burst", "mempool_max_txs"):
        doc_json["params"][field] = 0
    with pytest.raises(InvalidGenesis, match=r"\(and 2 more\)$"):
        genesis_from_obj(doc_json)


# --- random mutations: never a traceback, always InvalidGenesis -------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_docs(draw: st.DrawFn, base: Doc) -> Doc:
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(d)[1:]))
        parent: Any = d
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return d


def _base() -> Doc:
    return json.loads(assemble("fbci-test", sample_parts(2), genesis_time_ms=GENESIS_TIME_MS).to_json())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_docs(_base()))
def test_random_mutations_never_escape_as_anything_but_invalid_genesis(mutated: Doc) -> None:
    try:
        result = parse_genesis(json.dumps(mutated))
    except InvalidGenesis as exc:
        assert exc.message.startswith("genesis.json: ") and "\n" not in exc.message
    else:
        assert isinstance(result, GenesisDoc)
        result.hash()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    with pytest.raises(InvalidGenesis):
        parse_genesis(data)
