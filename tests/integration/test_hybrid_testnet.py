"""A testnet of hybrid Ed25519 + ML-DSA-65 validators (issue 10, part 8), as real processes under client load.

Every validator holds a hybrid key (``fbci genesis init --hybrid``): its votes, the commit certificates
built from them and its peer handshakes carry hybrid signatures. The chain must commit and stay one chain
with every acknowledged transaction on every node; the certificates served must hold hybrid signatures
that verify against genesis's key types (and not as Ed25519 alone); and a validator that was down catches
up by block sync, which verifies those certificates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from client.rpc import RpcClient
from consensus import CommitCertificate, Ed25519Verifier, InvalidCertificate, KeyedVerifier
from core.api import BLOCK_GET, BlockGetParams, CertificateInfo
from core.crypto import HYBRID_SIGNATURE_SIZE, HybridPublicKey
from devnet.testnet import Testnet
from genesis.home import HomePaths
from genesis.schema import load_genesis
from tests.integration.load import PROGRESS_S, assert_acked_everywhere, assert_same_chain, heights, \
    under_load, wait_growing, wait_heights

pytestmark = pytest.mark.timeout(300)

MakeTestnet = Callable[..., Testnet]


async def certificate_at(url: str, height: int) -> CertificateInfo:
    async with RpcClient(url) as node:
        block = await node.query(BLOCK_GET, BlockGetParams(height=height))
    assert block.commit_certificate is not None
    return block.commit_certificate


def test_hybrid_validators_commit_under_load_and_a_lagging_one_syncs_their_certificates(
        testnet: MakeTestnet) -> None:
    net = testnet(4, hybrid=True)
    doc = load_genesis(HomePaths(net.specs[0].home).genesis)
    assert all(isinstance(k, HybridPublicKey) for k in doc.validator_keys().values())
    validators = tuple(bytes.fromhex(v.public_key) for v in doc.validators)
    with under_load(net) as load:
        net.stop(3)
        load.wait_for_more(20, PROGRESS_S)  # three hybrid validators: still a quorum
        behind = heights(net, [0])[0]
        wait_growing(net, 3, PROGRESS_S, [0, 1, 2])
        net.restart(3)  # it syncs the blocks it missed, verifying each hybrid certificate
        wait_heights(net, heights(net, [0])[0], PROGRESS_S, [3])
        load.wait_for_more(20, PROGRESS_S)
        acked = load.snapshot()
    assert_acked_everywhere(net, acked)
    assert_same_chain(net)

    info = asyncio.run(certificate_at(net.specs[3].rpc_url, behind + 1))  # a block node 3 got by sync
    assert {len(s.signature) for s in info.signatures} == {HYBRID_SIGNATURE_SIZE}
    cert = CommitCertificate(info.height, info.view, info.block_hash,
                             tuple((s.validator, s.signature) for s in info.signatures))
    cert.verify(doc.chain_id, validators, KeyedVerifier(doc.chain_id, doc.validator_keys()))
    with pytest.raises(InvalidCertificate):
        cert.verify(doc.chain_id, validators, Ed25519Verifier(doc.chain_id))
