"""Hybrid validator keys through the production path: keys gen --hybrid, public parts, genesis assemble."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.crypto import HybridPublicKey
from core.errors import InvalidInput
from genesis.home import HomePaths
from genesis.keys import generate_identity, show_identity
from genesis.schema import load_genesis
from tests.cli.test_cli import assert_clean_error, fbci


def test_a_hybrid_hospital_joins_the_genesis_from_the_command_line(tmp_path: Path) -> None:
    r = fbci("keys", "gen", "--home", str(tmp_path / "pq"), "--p2p", "10.1.0.1:26600", "--hybrid")
    assert r.returncode == 0, r.stderr
    part = json.loads(r.stdout)
    assert len(part["ml_dsa_public_key"]) == 3904
    assert fbci("keys", "gen", "--home", str(tmp_path / "ed"), "--p2p", "10.1.0.2:26600").returncode == 0
    assert fbci("keys", "gen", "--home", str(tmp_path / "boss"), "--roles", "admin").returncode == 0
    assert_clean_error(fbci("keys", "gen", "--home", str(tmp_path / "x"), "--roles", "admin", "--hybrid"), 1,
                       "only a validator key may be hybrid")
    out = tmp_path / "genesis.json"
    publics = [str(tmp_path / d / "public.json") for d in ("pq", "ed", "boss")]
    assembled = fbci("genesis", "assemble", "--chain-id", "consortium", "--out", str(out), *publics)
    assert assembled.returncode == 0, assembled.stderr
    entries = {v["name"]: v for v in json.loads(out.read_text())["validators"]}
    assert entries["pq"]["key_type"] == "ed25519+ml-dsa-65"
    assert entries["pq"]["ml_dsa_public_key"] == part["ml_dsa_public_key"]
    assert "key_type" not in entries["ed"]
    keys = load_genesis(out).validator_keys()
    assert isinstance(keys[bytes.fromhex(part["public_key"])], HybridPublicKey)
    assert show_identity(tmp_path / "pq").ml_dsa_public_key == part["ml_dsa_public_key"]


def test_show_identity_refuses_a_public_part_that_lost_its_ml_dsa_half(tmp_path: Path) -> None:
    generate_identity(tmp_path, name="pq", roles=["validator"], p2p_address="10.0.0.1:1", hybrid=True)
    paths = HomePaths(tmp_path)
    doc = json.loads(paths.public.read_text())
    paths.public.write_text(json.dumps({**doc, "ml_dsa_public_key": None}))
    with pytest.raises(InvalidInput, match="does not match"):
        show_identity(tmp_path)


def test_genesis_init_hybrid_gives_every_validator_a_hybrid_key(tmp_path: Path) -> None:
    r = fbci("genesis", "init", "--validators", "4", "--out", str(tmp_path / "net"), "--hybrid")
    assert r.returncode == 0, r.stderr
    doc = load_genesis(tmp_path / "net" / "genesis.json")
    assert [v.key_type for v in doc.validators] == ["ed25519+ml-dsa-65"] * 4
    assert all(isinstance(k, HybridPublicKey) for k in doc.validator_keys().values())
