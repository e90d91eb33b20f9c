"""Wire format, certificates and evidence: strict decoding and checks that anyone can redo."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import (
    Commit, CommitCertificate, CommitProof, Evidence, InvalidCertificate, InvalidEvidence, NewView, PrePrepare,
    Prepare, PreparedCertificate, ViewChange, decode_message, encode_message,
)
from consensus.certificates import KIND_COMMIT, KIND_PREPARE, quorum_size, vote_sign_bytes
from core import codec
from core.errors import DecodeError
from tests.consensus.fakes import FakeSigner, FakeVerifier, validator_keys

CHAIN = "test-chain"
KEYS = validator_keys(4)
H = bytes(range(32))


def sign(msg, key: bytes = KEYS[0]):
    return dataclasses.replace(msg, signature=FakeSigner(key).sign(msg.kind, msg.sign_bytes(CHAIN)))


def cert_sigs(kind: str, signers: tuple[bytes, ...], height: int = 5, view: int = 1, block_hash: bytes = H):
    body = vote_sign_bytes(CHAIN, height, view, block_hash)
    return tuple((k, FakeSigner(k).sign(kind, body)) for k in signers)


def samples() -> list:
    prepared = PreparedCertificate(5, 0, H, b"block", cert_sigs(KIND_PREPARE, KEYS[:3], view=0))
    vc = sign(ViewChange(5, 1, prepared, KEYS[1], b""), KEYS[1])
    return [
        sign(PrePrepare(5, 0, H, b"block", KEYS[0], b"")),
        sign(Prepare(5, 0, H, KEYS[0], b"")),
        sign(Commit(5, 0, H, KEYS[0], b"")),
        vc,
        sign(ViewChange(5, 2, None, KEYS[0], b"")),
        sign(NewView(5, 1, (vc,), H, b"block", KEYS[2], b""), KEYS[2]),
        CommitProof(CommitCertificate(5, 1, H, cert_sigs(KIND_COMMIT, KEYS[:3])), KEYS[3]),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_every_message_roundtrips(msg) -> None:
    assert decode_message(encode_message(msg)) == msg


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=200))
def test_garbage_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    try:
        decode_message(data)
    except DecodeError:
        pass


@pytest.mark.parametrize("value", [
    ["prepare", 1, 0, H[:31], KEYS[0], b"s"],          # short hash
    ["prepare", -1, 0, H, KEYS[0], b"s"],              # negative height
    ["prepare", True, 0, H, KEYS[0], b"s"],            # bool is not an int
    ["commit", 1, 0, H, KEYS[0], b""],                 # empty signature
    ["commit", 1, 0, H, KEYS[0], b"s", "extra"],       # extra field
    ["vote", 1, 0, H, KEYS[0], b"s"],                  # unknown type
    ["new-view", 1, 1, [["prepare", 1, 0, H, KEYS[0], b"s"]], H, b"b", KEYS[0], b"s"],
])
def test_malformed_fields_are_rejected(value: list) -> None:
    with pytest.raises(DecodeError):
        decode_message(codec.encode(value))


def test_commit_certificate_encoding_is_strict_and_hashable() -> None:
    cert = CommitCertificate(5, 1, H, cert_sigs(KIND_COMMIT, KEYS[:3]))
    assert CommitCertificate.decode(cert.encode()) == cert
    assert len(cert.hash()) == 32
    unsorted = codec.encode([5, 1, H, [list(p) for p in reversed(cert.signatures)]])
    with pytest.raises(DecodeError):
        CommitCertificate.decode(unsorted)


def test_commit_certificate_needs_a_quorum_of_valid_distinct_validator_signatures() -> None:
    """Castro & Liskov 4.2: a request commits when "2f+1 commits ... matching the pre-prepare" exist."""
    verifier = FakeVerifier()
    assert quorum_size(4) == 3 and quorum_size(7) == 5 and quorum_size(1) == 1
    CommitCertificate(5, 1, H, cert_sigs(KIND_COMMIT, KEYS[:3])).verify(CHAIN, KEYS, verifier)
    too_few = CommitCertificate(5, 1, H, cert_sigs(KIND_COMMIT, KEYS[:2]))
    wrong_kind = CommitCertificate(5, 1, H, cert_sigs(KIND_PREPARE, KEYS[:3]))
    stranger = CommitCertificate(5, 1, H, cert_sigs(KIND_COMMIT, KEYS[:2] + validator_keys(9)[8:]))
    other_view = CommitCertificate(5, 2, H, cert_sigs(KIND_COMMIT, KEYS[:3]))
    for bad in (too_few, wrong_kind, stranger, other_view):
        with pytest.raises(InvalidCertificate):
            bad.verify(CHAIN, KEYS, verifier)
    with pytest.raises(InvalidCertificate):
        CommitCertificate(5, 1, H, cert_sigs(KIND_COMMIT, KEYS[:3])).verify("other-chain", KEYS, verifier)


def test_evidence_roundtrips_and_verifies_only_real_conflicts() -> None:
    a = sign(Prepare(5, 0, H, KEYS[1], b""), KEYS[1])
    b = sign(Prepare(5, 0, bytes(32), KEYS[1], b""), KEYS[1])
    ev = Evidence(a, b)
    assert Evidence.decode(ev.encode()).encode() == ev.encode()
    ev.verify(CHAIN, KEYS, FakeVerifier())
    for bad in (Evidence(a, a), Evidence(a, sign(Prepare(5, 1, bytes(32), KEYS[1], b""), KEYS[1])),
                Evidence(a, dataclasses.replace(b, signature=b"forged"))):
        with pytest.raises(InvalidEvidence):
            bad.verify(CHAIN, KEYS, FakeVerifier())
