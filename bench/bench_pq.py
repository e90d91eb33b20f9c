"""Post-quantum readiness: what hybrid Ed25519 + ML-DSA-65 keys and the X25519 + ML-KEM-768 handshake cost.

Side by side in one run, on one core, through the node's own calls:

- per transaction: signing and verifying a transaction-sized body (``core.crypto``), and the signature
  size. (Transactions themselves are Ed25519-only today: the envelope has a 64-byte signature; this is
  the cost a hybrid envelope would carry.)
- per block: verifying a commit certificate of 2f + 1 signatures for n = 4 and n = 7 validators
  (``CommitCertificate.verify`` with ``KeyedVerifier``, as block sync and LastCommit checks do), and
  the certificate's encoded size;
- per peer link: one full handshake, both ends in one process (``node.transport.handshake``), with
  Ed25519 and with hybrid validator keys, and the bytes it puts on the wire; and the key agreement
  alone, X25519 against X25519 + ML-KEM-768.

Run: ``python -m bench.bench_pq [--seconds S]``; writes ``bench/results/pq.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.common import ed25519_verify_rate, table, write_result
from consensus.certificates import KIND_COMMIT, CommitCertificate, quorum_size, vote_sign_bytes
from consensus.signing import ChainSigner, KeyedVerifier
from core.crypto import AnySigningKey, HybridPrivateKey, PrivateKey, VerifyingKey, sign_bytes
from core.tx import SIGN_KIND
from node.transport.handshake import Handshake, Role

CHAIN = "bench"
SECONDS = 0.3
ROUNDS = 3
TX_BODY = b"x" * 200


def per_second(fn: Callable[[], object], seconds: float = SECONDS) -> float:
    """Calls of ``fn`` per second, timed for at least ``seconds``."""
    done, started = 0, time.perf_counter()
    while True:
        fn()
        done += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def keys(kind: str, n: int) -> list[AnySigningKey]:
    if kind == "ed25519":
        return [PrivateKey(bytes([i + 1]) * 32) for i in range(n)]
    return [HybridPrivateKey(bytes([i + 1]) * 32, bytes([i + 101]) * 32) for i in range(n)]


def tx_row(kind: str, seconds: float) -> dict[str, Any]:
    (key,) = keys(kind, 1)
    signed = sign_bytes(CHAIN, SIGN_KIND, TX_BODY)
    signature = key.sign(CHAIN, SIGN_KIND, TX_BODY)
    public = key.public_key
    assert public.verify_signed(signed, signature)
    verify_rate = per_second(lambda: public.verify_signed(signed, signature), seconds)
    return {"what": "transaction", "key_type": kind, "signature_bytes": len(signature),
            "sign_us": 1e6 / per_second(lambda: key.sign(CHAIN, SIGN_KIND, TX_BODY), seconds),
            "verify_us": 1e6 / verify_rate, "verify_per_s": verify_rate}


def certificate_row(kind: str, n: int, seconds: float) -> dict[str, Any]:
    validators = keys(kind, n)
    ids = tuple(k.public_key.raw for k in validators)
    verifier = KeyedVerifier(CHAIN, {k.public_key.raw: k.public_key for k in validators})
    block_hash = bytes(32)
    body = vote_sign_bytes(CHAIN, 1, 0, block_hash)
    quorum = quorum_size(n)
    cert = CommitCertificate(1, 0, block_hash, tuple(
        (k.public_key.raw, ChainSigner(k, CHAIN).sign(KIND_COMMIT, body)) for k in validators[:quorum]))
    rate = per_second(lambda: cert.verify(CHAIN, ids, verifier), seconds)
    return {"what": f"block certificate n={n} ({quorum} sigs)", "key_type": kind,
            "signature_bytes": len(cert.encode()), "verify_us": 1e6 / rate, "verify_per_s": rate}


def handshake_once(acceptor_key: AnySigningKey, dialer_key: AnySigningKey,
                   allowed: dict[bytes, VerifyingKey]) -> int:
    """One complete handshake; returns the bytes both sides sent."""
    acceptor = Handshake(Role.ACCEPTOR, chain_id=CHAIN, key=acceptor_key, listen="a:1", peer_keys=allowed.get,
                         max_plaintext=1 << 20)
    dialer = Handshake(Role.DIALER, chain_id=CHAIN, key=dialer_key, listen="d:1", peer_keys=allowed.get,
                       max_plaintext=1 << 20)
    opening = acceptor.opening() or b""
    hello, auth = dialer.receive(opening)
    acceptor.receive(hello)
    (reply,) = acceptor.receive(auth)
    dialer.receive(reply)
    assert acceptor.session is not None and dialer.session is not None
    return len(opening) + len(hello) + len(auth) + len(reply)


def handshake_row(kind: str, seconds: float) -> dict[str, Any]:
    a, d = keys(kind, 2)
    allowed = {k.public_key.raw: k.public_key for k in (a, d)}
    wire = handshake_once(a, d, allowed)
    rate = per_second(lambda: handshake_once(a, d, allowed), seconds)
    return {"what": "peer handshake (both ends)", "key_type": kind, "signature_bytes": wire,
            "verify_us": 1e6 / rate, "verify_per_s": rate}


def key_agreement_row(hybrid: bool, seconds: float) -> dict[str, Any]:
    """Both ends' work for the key agreement alone: X25519, and ML-KEM-768 keygen, encapsulation and
    decapsulation when hybrid."""
    def agree() -> None:
        ours, theirs = X25519PrivateKey.generate(), X25519PrivateKey.generate()
        ours.exchange(theirs.public_key())
        theirs.exchange(ours.public_key())
        if hybrid:
            kem = MLKEM768PrivateKey.generate()
            _, ciphertext = kem.public_key().encapsulate()
            kem.decapsulate(ciphertext)
    rate = per_second(agree, seconds)
    return {"what": "key agreement only", "key_type": "x25519+ml-kem-768" if hybrid else "x25519",
            "signature_bytes": 64 + (1184 + 1088 if hybrid else 0), "verify_us": 1e6 / rate, "verify_per_s": rate}


def measure(seconds: float = SECONDS, rounds: int = ROUNDS) -> dict[str, Any]:
    """Every row, each timed for ``seconds`` in each of ``rounds`` interleaved rounds, keeping its fastest
    round (on a shared machine the slow rounds measure the neighbours); ``x_ed25519`` is a row's cost over
    the Ed25519 row of the same work."""
    hybrid = "ed25519+ml-dsa-65"
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(rounds):
        rows = [tx_row("ed25519", seconds), tx_row(hybrid, seconds)]
        for n in (4, 7):
            rows += [certificate_row("ed25519", n, seconds), certificate_row(hybrid, n, seconds)]
        rows += [handshake_row("ed25519", seconds), handshake_row(hybrid, seconds)]
        rows += [key_agreement_row(False, seconds), key_agreement_row(True, seconds)]
        for row in rows:
            key = (row["what"], row["key_type"])
            if key not in best or row["verify_per_s"] > best[key]["verify_per_s"]:
                best[key] = row
    rows = list(best.values())
    for row in rows:
        base = next(r for r in rows if r["what"] == row["what"])
        row["x_ed25519"] = row["verify_us"] / base["verify_us"]
    return {"ed25519_verify_per_s": ed25519_verify_rate(seconds), "seconds_per_row": seconds, "rounds": rounds,
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"time per row and round (default: {SECONDS})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds, fastest kept (default: {ROUNDS})")
    args = parser.parse_args()
    result = measure(args.seconds, args.rounds)
    rows = result["rows"]
    print(f"Ed25519 verify on one core, this run: {result['ed25519_verify_per_s']:,.0f}/s")
    print(table(rows, [("what", "work", ""), ("key_type", "key type", ""), ("signature_bytes", "bytes", ","),
                       ("sign_us", "sign us", ".1f"), ("verify_us", "verify/run us", ".1f"),
                       ("verify_per_s", "per s", ",.0f"), ("x_ed25519", "x Ed25519", ".2f")]))
    out = write_result("pq", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
