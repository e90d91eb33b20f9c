"""A light client: reads chain state from any of several validators and believes only what it checks.

It trusts the genesis document (its validator set, handed over out of band
like the chain id) or a height the caller already trusts, and nothing a
validator says. Every read asks with ``prove: true`` and goes through
:func:`client.light_verify.verify_answer`: the header's commit certificate,
the proof against the header's state root, and the query re-executed over the
proven state. A validator that serves a wrong model, a forged or shortened
alert list, a stale height or a fake receipt is refused with an
:class:`core.errors.UnverifiedAnswer` subclass, and the client asks the next
endpoint of its list; only when none gives a verified answer does the caller
see :class:`core.errors.NoVerifiedAnswer`, with each endpoint's reason.

Freshness: the client keeps the highest header height it has verified (from
answers, and from every endpoint's latest certified block, :meth:`sync_head`)
and refuses an answer proved against a header more than ``max_lag_blocks``
older. A quorum of validators cannot be made to sign an old header as new,
so one validator can delay a client but not feed it old state as current.

The validator set comes from a :class:`client.light_verify.ValidatorSetProvider`
per height. From genesis it is a :class:`client.light_verify.ChainValidators`:
when a header names a set it has not followed to, the client asks that
validator for the sets the chain decided (``validator_sets``) and accepts each
new one only through the certified header before it (``next_validators_hash``),
so a lying validator can at worst make it ask another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from consensus import CommitCertificate
from core.api import BLOCK_GET, BlockGetParams, BlockInfo, NoParams, Params, Query
from core.block import BlockHeader
from core.errors import (
    FbciError, HeaderUnverified, NoVerifiedAnswer, NotFound, ProofInvalid, ReadRefused, Timeout, UnverifiedAnswer,
    ValidatorSetUnknown,
)
from core.proofs import CORE_STATE_QUERIES, ProvenAnswer
from core import keyhistory
from core import validators as validator_queries
from fl_contracts import queries as fl_queries
from governance import queries as gov_queries
from genesis import params_state
from genesis.home import HomePaths
from genesis.schema import GenesisDoc, load_genesis
from ids import queries as alert_queries
from client.light_verify import (
    Answer, ChainValidators, HeaderVerifier, ValidatorSetProvider, accept_change, verify_answer,
)
from client.rpc import RpcClient

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Params)
R = TypeVar("R")

PROVABLE: dict[str, Answer] = {q.path: fn for q, fn in (
    *CORE_STATE_QUERIES, *fl_queries.STATE_QUERIES, *alert_queries.STATE_QUERIES, *gov_queries.STATE_QUERIES,
    *keyhistory.STATE_QUERIES, *validator_queries.STATE_QUERIES, *params_state.STATE_QUERIES)}
"""Each provable read's answer function: the same ones the validator runs (``node.app.STATE_QUERIES``)."""

DEFAULT_MAX_LAG_BLOCKS = 8
POLL_S = 0.1


class LightClient:
    def __init__(self, endpoints: Sequence[RpcClient], chain_id: str, validators: ValidatorSetProvider, *,
                 trusted_height: int = 0, max_lag_blocks: int = DEFAULT_MAX_LAG_BLOCKS) -> None:
        if not endpoints:
            raise FbciError("a light client needs at least one validator endpoint")
        self.endpoints = list(endpoints)
        self.headers = HeaderVerifier(chain_id, validators)
        self.trusted_height = trusted_height
        self.max_lag_blocks = max_lag_blocks
        self._current = 0

    @classmethod
    def from_genesis(cls, doc: GenesisDoc, endpoints: Sequence[RpcClient], **options: Any) -> LightClient:
        return cls(endpoints, doc.chain_id, ChainValidators(doc.validator_set()), **options)

    def _verified(self, answer: ProvenAnswer, query: Query[P, R], answer_fn: Answer, params: P) -> R:
        result: R = verify_answer(answer, query.path, answer_fn, params, self.headers, min_height=self.min_height)
        return result

    @property
    def min_height(self) -> int:
        return max(0, self.trusted_height - self.max_lag_blocks)

    async def query(self, query: Query[P, R], params: P, *, min_state_height: int = 0,
                    timeout_s: float = 30.0) -> R:
        """The verified result of ``query``, from the first endpoint (starting with the last good one)
        whose answer checks out.

        ``min_state_height``: read your writes. A proof shows the state before the newest block, so a
        caller that saw its transaction commit at height h passes h, and the client asks again (each
        new block is one more chance) until a verified answer covers it, for up to ``timeout_s``.
        A proven absence is asked once more the same way, covering the block the validator had
        committed but no header yet certified: a version or receipt that was just made is found."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        absent_retried = False
        while True:
            try:
                result, state_height = await self._query_once(query, params)
            except NotFound as exc:
                proven = exc.data.get("proven_height")
                if proven is None:
                    raise
                if proven >= min_state_height:
                    if absent_retried:
                        raise
                    absent_retried, min_state_height = True, proven + 1
                state_height = proven
            else:
                if state_height >= min_state_height:
                    return result
            if asyncio.get_running_loop().time() > deadline:
                raise Timeout(f"no verified answer to {query.path} covers height {min_state_height} within "
                              f"{timeout_s:g} s (the newest proves height {state_height})")
            await asyncio.sleep(POLL_S)  # waiting for the chain's next block, not synchronising a test

    async def _query_once(self, query: Query[P, R], params: P) -> tuple[R, int]:
        answer_fn = PROVABLE.get(query.path)
        if answer_fn is None or not query.provable:
            raise FbciError(f"query {query.path} has no proof a light client could check")
        failures: list[str] = []
        refusals: list[ReadRefused] = []
        for step in range(len(self.endpoints)):
            index = (self._current + step) % len(self.endpoints)
            rpc = self.endpoints[index]
            try:
                answer = await rpc.prove(query, params)
                try:
                    result = self._verified(answer, query, answer_fn, params)
                except ValidatorSetUnknown:
                    await follow_sets(self.headers, rpc)
                    result = self._verified(answer, query, answer_fn, params)
            except NotFound as exc:
                if "proven_height" in exc.data:
                    raise
                failures.append(f"{rpc.rpc_url}: {exc.reason}: {exc.message}")
            except FbciError as exc:
                if isinstance(exc, UnverifiedAnswer):
                    log.warning("refused %s from %s: %s", query.path, rpc.rpc_url, exc.message)
                if isinstance(exc, ReadRefused):
                    refusals.append(exc)
                failures.append(f"{rpc.rpc_url}: {exc.reason}: {exc.message}")
            except aiohttp.ClientError as exc:
                failures.append(f"{rpc.rpc_url}: unreachable: {type(exc).__name__}")
            else:
                self._current = index
                self.trusted_height = max(self.trusted_height, answer.state_height + 1)
                return result, answer.state_height
        if refusals and len(refusals) == len(failures):  # every validator refused this reader: say why, as it did
            raise refusals[0]
        raise NoVerifiedAnswer(f"no validator gave a verified answer to {query.path}: {'; '.join(failures)}",
                               data={"failures": failures})

    async def sync_head(self) -> int:
        """Raise the trusted height to the highest latest block any endpoint shows with a valid certificate
        (an endpoint whose head does not verify is skipped); returns the trusted height."""
        for rpc in self.endpoints:
            try:
                info = await rpc.query(BLOCK_GET, BlockGetParams())
                try:
                    self.headers.verify(header_of(info), certificate_of(info))
                except ValidatorSetUnknown:
                    await follow_sets(self.headers, rpc)
                    self.headers.verify(header_of(info), certificate_of(info))
            except (FbciError, aiohttp.ClientError) as exc:
                log.warning("no verified head from %s: %s", rpc.rpc_url, exc)
                continue
            self.trusted_height = max(self.trusted_height, info.height)
        return self.trusted_height



async def follow_sets(headers: HeaderVerifier, rpc: RpcClient) -> None:
    """Accept the validator sets ``rpc`` says the chain decided since the last one ``headers`` knows,
    each through the certified header before it; a set whose height has no block yet waits."""
    provider = headers.validators
    if not isinstance(provider, ChainValidators):
        return
    served = await rpc.query(validator_queries.VALIDATOR_SETS, NoParams())
    known = provider.sets
    if any(a.start != b.start or a.validators != b.validators for a, b in zip(served, known)):
        raise HeaderUnverified(f"{rpc.rpc_url} serves validator sets that differ from the ones this client "
                               f"followed from genesis")
    for change in served[len(known):]:
        try:
            info = await rpc.query(BLOCK_GET, BlockGetParams(height=change.start - 1))
        except NotFound:
            return
        accept_change(provider, headers, change, header_of(info), certificate_of(info))


def header_of(info: BlockInfo) -> BlockHeader:
    return info.header()


def certificate_of(info: BlockInfo) -> bytes:
    cert = info.commit_certificate
    if cert is None:
        raise ProofInvalid(f"block {info.height} came without its commit certificate")
    return CommitCertificate(cert.height, cert.view, cert.block_hash,
                             tuple((s.validator, s.signature) for s in cert.signatures)).encode()


def home_genesis(home: str | Path | None) -> GenesisDoc | None:
    """The genesis document in ``HOME/config/genesis.json`` when there is one: the light client's root
    of trust (without it a session trusts the genesis its first validator serves)."""
    path = None if home is None else HomePaths(Path(home)).genesis
    return load_genesis(path) if path is not None and path.exists() else None
