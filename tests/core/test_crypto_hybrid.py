"""Hybrid keys, Ed25519 + ML-DSA-65 (issue 10, part 8): both halves or nothing, wherever a key type is declared.

A hybrid signature must fail when either half is wrong (so it holds while either scheme holds), a
hybrid-registered validator is never satisfied by an Ed25519-only signature (no downgrade), key files
carry their type, genesis declares the type without changing any existing genesis hash, and commit
certificates of hybrid validators verify through the keyed verifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consensus.certificates import KIND_COMMIT, CommitCertificate, InvalidCertificate, vote_sign_bytes
from consensus.signing import ChainSigner, Ed25519Verifier, KeyedVerifier
from core.crypto import (
    HYBRID_SIGNATURE_SIZE, MAX_SIGNATURE_SIZE, HybridPrivateKey, HybridPublicKey, KeyType, PrivateKey, PublicKey,
    decode_hybrid_signature, encode_hybrid_signature, load_signing_key, sign_bytes,
)
from core.errors import InvalidGenesis, InvalidInput
from genesis.schema import GenesisDoc, genesis_from_obj
from tests.genesis.conftest import doc, doc_json  # noqa: F401  (the genesis fixtures)

CHAIN = "fbci-test"
HYBRID = HybridPrivateKey(bytes([7]) * 32, bytes([8]) * 32)
OTHER = HybridPrivateKey(bytes([9]) * 32, bytes([10]) * 32)
MESSAGE = b"a vote"


def test_a_hybrid_signature_verifies_and_has_the_documented_size() -> None:
    signature = HYBRID.sign(CHAIN, "k", MESSAGE)
    assert len(signature) == HYBRID_SIGNATURE_SIZE == MAX_SIGNATURE_SIZE
    assert HYBRID.public_key.verify(CHAIN, "k", MESSAGE, signature)
    assert HYBRID.public_key.key_type is KeyType.HYBRID and HYBRID.public_key.raw == HYBRID.ed25519.public_key.raw
    for chain, kind, message in ((CHAIN + "x", "k", MESSAGE), (CHAIN, "k2", MESSAGE), (CHAIN, "k", b"other")):
        assert not HYBRID.public_key.verify(chain, kind, message, signature)


def test_either_half_alone_is_not_enough() -> None:
    signed = sign_bytes(CHAIN, "k", MESSAGE)
    ed, ml = decode_hybrid_signature(HYBRID.sign(CHAIN, "k", MESSAGE))
    other_ed, other_ml = decode_hybrid_signature(OTHER.sign(CHAIN, "k", MESSAGE))
    key = HYBRID.public_key
    assert key.verify_signed(signed, encode_hybrid_signature(ed, ml))
    assert not key.verify_signed(signed, encode_hybrid_signature(ed, other_ml))  # ML-DSA half forged
    assert not key.verify_signed(signed, encode_hybrid_signature(other_ed, ml))  # Ed25519 half forged
    assert not key.verify_signed(signed, ed)  # the Ed25519 signature alone: a downgrade
    assert not key.verify_signed(signed, HYBRID.ed25519.sign(CHAIN, "k", MESSAGE))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_no_mutation_of_a_hybrid_signature_verifies(data: st.DataObject) -> None:
    original = HYBRID.sign(CHAIN, "k", MESSAGE)
    signature = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        signature[data.draw(st.integers(0, len(signature) - 1))] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.none() | st.integers(0, len(signature)))
    mutated = bytes(signature if cut is None else signature[:cut])
    assume(mutated != original)
    assert not HYBRID.public_key.verify(CHAIN, "k", MESSAGE, mutated)


def test_malformed_hybrid_public_keys_are_refused() -> None:
    with pytest.raises(InvalidInput, match="1952 bytes"):
        HybridPublicKey(HYBRID.public_key.raw, b"\0" * 10)
    with pytest.raises(InvalidInput, match="32 bytes"):
        HybridPublicKey(b"\0" * 31, HYBRID.public_key.ml_dsa)


def test_key_files_carry_their_type(tmp_path: Path) -> None:
    HYBRID.save(tmp_path / "hybrid.json")
    PrivateKey(bytes([3]) * 32).save(tmp_path / "ed.json")
    loaded = load_signing_key(tmp_path / "hybrid.json")
    assert isinstance(loaded, HybridPrivateKey) and loaded.public_key == HYBRID.public_key
    assert isinstance(load_signing_key(tmp_path / "ed.json"), PrivateKey)
    assert json.loads((tmp_path / "hybrid.json").read_text())["type"] == "ed25519+ml-dsa-65"
    with pytest.raises(InvalidInput, match="not an fbci ed25519 key"):
        PrivateKey.load(tmp_path / "hybrid.json")  # the Ed25519-only loader never takes half a hybrid key
    doc = json.loads((tmp_path / "hybrid.json").read_text())
    (tmp_path / "odd.json").write_text(json.dumps({**doc, "type": "rsa"}))
    (tmp_path / "odd.json").chmod(0o600)
    with pytest.raises(InvalidInput, match="expected one of"):
        load_signing_key(tmp_path / "odd.json")


def test_the_keyed_verifier_holds_a_hybrid_validator_to_hybrid_signatures() -> None:
    ed25519 = PrivateKey(bytes([4]) * 32)
    verifier = KeyedVerifier(CHAIN, {HYBRID.public_key.raw: HYBRID.public_key})
    hybrid_vote = ChainSigner(HYBRID, CHAIN).sign(KIND_COMMIT, MESSAGE)
    half_vote = ChainSigner(HYBRID.ed25519, CHAIN).sign(KIND_COMMIT, MESSAGE)
    assert verifier.verify(HYBRID.public_key.raw, KIND_COMMIT, MESSAGE, hybrid_vote)
    assert not verifier.verify(HYBRID.public_key.raw, KIND_COMMIT, MESSAGE, half_vote)
    # An identity registered nowhere is an Ed25519 key, as before.
    assert verifier.verify(ed25519.public_key.raw, KIND_COMMIT, MESSAGE,
                           ChainSigner(ed25519, CHAIN).sign(KIND_COMMIT, MESSAGE))
    assert not Ed25519Verifier(CHAIN).verify(HYBRID.public_key.raw, KIND_COMMIT, MESSAGE, hybrid_vote)


@pytest.mark.parametrize("n", [4, 7])
def test_a_certificate_of_hybrid_validators_round_trips_and_verifies_only_with_their_key_types(n: int) -> None:
    keys = [HybridPrivateKey(bytes([20 + i]) * 32, bytes([40 + i]) * 32) for i in range(n)]
    validators = tuple(k.public_key.raw for k in keys)
    block_hash = bytes(32)
    body = vote_sign_bytes(CHAIN, 5, 0, block_hash)
    quorum = (n + (n - 1) // 3) // 2 + 1
    sigs = tuple((k.public_key.raw, ChainSigner(k, CHAIN).sign(KIND_COMMIT, body)) for k in keys[:quorum])
    cert = CommitCertificate.decode(CommitCertificate(5, 0, block_hash, sigs).encode())
    verifier = KeyedVerifier(CHAIN, {k.public_key.raw: k.public_key for k in keys})
    cert.verify(CHAIN, validators, verifier)
    with pytest.raises(InvalidCertificate, match="bad signature"):
        cert.verify(CHAIN, validators, Ed25519Verifier(CHAIN))
    downgraded = tuple((k.public_key.raw, ChainSigner(k.ed25519, CHAIN).sign(KIND_COMMIT, body))
                       for k in keys[:quorum])
    with pytest.raises(InvalidCertificate, match="bad signature"):
        CommitCertificate(5, 0, block_hash, downgraded).verify(CHAIN, validators, verifier)


# ---- genesis ----------------------------------------------------------------------------------


def _hybrid_validator(doc_json: dict[str, Any], key: HybridPrivateKey = HYBRID) -> dict[str, Any]:
    """``doc_json`` with validator 0 (and its account) replaced by the hybrid key."""
    old = doc_json["validators"][0]["public_key"]
    new = key.public_key.raw.hex()
    doc_json["validators"][0].update(public_key=new, key_type="ed25519+ml-dsa-65",
                                     ml_dsa_public_key=key.public_key.ml_dsa.hex())
    for account in doc_json["accounts"]:
        if account["public_key"] == old:
            account["public_key"] = new
    return doc_json


def test_an_ed25519_genesis_is_written_and_hashed_as_before(doc: GenesisDoc, doc_json: dict[str, Any]) -> None:
    assert all("key_type" not in v and "ml_dsa_public_key" not in v for v in doc_json["validators"])
    assert genesis_from_obj(doc_json).hash() == doc.hash()
    assert all(isinstance(k, PublicKey) for k in doc.validator_keys().values())


def test_genesis_declares_a_hybrid_validator(doc_json: dict[str, Any]) -> None:
    hybrid = genesis_from_obj(_hybrid_validator(doc_json))
    assert hybrid.validator_keys()[HYBRID.public_key.raw] == HYBRID.public_key
    assert genesis_from_obj(json.loads(hybrid.to_json())).hash() == hybrid.hash()


@pytest.mark.parametrize("change, message", [
    ({"ml_dsa_public_key": None}, "required for a hybrid key"),
    ({"key_type": "ed25519"}, "absent otherwise"),
    ({"key_type": "rsa"}, "key_type"),
    ({"ml_dsa_public_key": "ab" * 10}, "3904 lower-case hex digits"),
])
def test_inconsistent_key_types_are_refused_naming_the_field(doc_json: dict[str, Any], change: dict[str, Any],
                                                              message: str) -> None:
    obj = _hybrid_validator(doc_json)
    obj["validators"][0].update(change)
    if obj["validators"][0]["ml_dsa_public_key"] is None:
        del obj["validators"][0]["ml_dsa_public_key"]
    with pytest.raises(InvalidGenesis, match=message):
        genesis_from_obj(obj)
