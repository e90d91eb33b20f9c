"""The RPC methods: one pydantic params model and one handler each, in one table.

The params models are the single source of truth for validation (strict
types, unknown names refused) and for the OpenRPC document, which is generated
from them. Field order is the positional order for by-position params.
Handlers translate params into :class:`~node.rpc.node_api.NodeApi` calls and do
only edge work themselves: authenticating a submitted transaction (its
signature, through the node's signature cache) before its signer is charged a
rate-limit token, and reporting bad signatures against the address that sent
them. Every read of chain state is a
:class:`core.api.Query` the node passes in: its method is made here from its
definition, so the RPC layer does not know what the application stores.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field, create_model

from core.api import (
    Access, AccountGetParams, AccountInfo, NodeStatus, NoParams, Params, Query, TxAccepted, TxCommitResult,
)
from core.blob_api import (
    BLOB_GET, BLOB_PUT, BLOB_STATUS, BlobChunk, BlobPutParams, BlobPutResult, BlobRefParams, BlobStatus, ChunkParams,
)
from core.errors import BadSignature, FbciError, MethodNotFound, Timeout
from core.hashing import sha256
from core.proofs import ProvenAnswer
from core.readauth import ReadAuth
from core.tx import Transaction, sender_of
from core.wire import HexBytes, to_wire
from genesis.schema import GenesisWithHash, ValidatorInfo
from node.rpc.admission import Admission
from node.rpc.node_api import MISBEHAVIOUR_BAD_SIGNATURE, NodeApi, SignatureCheck
from node.rpc.subscriptions import TOPICS


class SubscriptionSession(Protocol):
    """A websocket connection's subscriptions (see ``node.rpc.websocket``)."""

    def subscribe(self, topic: str) -> str: ...

    def unsubscribe(self, subscription_id: str) -> bool: ...


@dataclass(frozen=True)
class CallContext:
    client: str
    session: SubscriptionSession | None = None
    """The websocket connection the call came on; ``None`` over HTTP."""
    auth: ReadAuth | None = None
    """The signed read request carried in by-name params (``params.auth``), if any."""


class ReadGate(Protocol):
    """Private reads (``node.read_auth.ReadGuard``): ``ask`` answers once the request may be answered."""

    async def read(self, query: Query[Any, Any], params: Params, auth: ReadAuth | None, client: str,
                   ask: Callable[[Params], Awaitable[object]]) -> object: ...

    async def subscribe(self, topic: str, params: Params, auth: ReadAuth | None, client: str,
                        ask: Callable[[Params], Awaitable[object]]) -> object: ...

    def is_private(self, path: str) -> bool:
        """Whether this node answers the read ``path`` only for a signed request (genesis policy)."""
        ...


class BlobApi(Protocol):
    """The node's blob store as the RPC sees it (``node.blobs.endpoint.BlobEndpoint``); ``client`` is the
    caller's address, which an upload is charged to."""

    async def put(self, p: BlobPutParams, client: str) -> BlobPutResult: ...

    async def status(self, p: BlobRefParams) -> BlobStatus: ...

    async def get(self, p: ChunkParams) -> BlobChunk: ...


class TxSubmitParams(Params):
    tx: HexBytes = Field(description="canonical encoding of a signed core.tx.Transaction, hex")


class TxSubmitCommitParams(TxSubmitParams):
    timeout_s: float = Field(30.0, gt=0, le=300, description="give up waiting for the commit after this long")


class SubscribeParams(Params):
    topic: Literal[tuple(sorted(TOPICS))] = Field(description="websocket only")  # type: ignore[valid-type]


class UnsubscribeParams(Params):
    subscription: str = Field(max_length=64, description="the id subscribe returned")


Handler = Callable[[Any, CallContext], Awaitable[Any]]


def json_bytes(value: Any) -> bytes:
    """The JSON text of a plain value, compact, as every answer is sent."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


@dataclass(frozen=True)
class EncodedResult:
    """A result already turned into JSON text, off the event loop; the dispatcher sends it as it is."""

    json: bytes
CommittedLookup = Callable[[bytes], "int | None"]
"""The height of the committed block carrying a transaction hash, if any (``LedgerApplication.committed_height``)."""


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    params: type[Params]
    result: Any
    """The result's Python type; its JSON schema goes into the OpenRPC document."""
    handler: Handler
    access: Access | None = None
    """For a read of chain state: who may call it, and whether this node answers it only when signed
    (``params.auth``); None for the node-level methods, which are open."""


class VerifyOnly:
    """A :class:`~node.rpc.node_api.SignatureCheck` that remembers nothing, for a server without the
    node's cache (tests, tools): every submission is verified and counts as new."""

    def __contains__(self, tx_hash: bytes) -> bool:
        return False

    def verify(self, tx: Transaction, tx_hash: bytes | None = None, raw: bytes | None = None) -> bool:
        return tx.verify_signature(raw)


@dataclass(frozen=True)
class TxAuth:
    """How the edge authenticates a submitted transaction before it charges the key it names."""

    max_tx_bytes: int
    chain_id: str | None
    """This chain: another chain's transaction is left to the mempool, which refuses it before any
    signature check, so ``signatures`` only ever learns hashes of this chain's transactions (block
    validation trusts that). ``None`` verifies every transaction (servers without a chain)."""
    signatures: SignatureCheck
    committed: CommittedLookup | None = None
    """The committed-transaction index: bytes already in a block are a retry or a replay of public bytes and
    charge no signer (the signature cache forgets old hashes; this index does not)."""


class _Handlers:
    """Closures over the node and the admission policy, one per method."""

    def __init__(self, api: NodeApi, admission: Admission, auth: TxAuth, reads: ReadGate | None = None,
                 offload: Executor | None = None) -> None:
        self.api = api
        self.admission = admission
        self.auth = auth
        self.reads = reads
        self.offload = offload

    def _authenticate(self, raw: bytes, ctx: CallContext) -> None:
        """Charge a submitted transaction to whoever it proves sent it, before the node sees it.

        A signature that verifies proves its key: the signer pays one token, once per distinct
        transaction (a resend of bytes already verified is a retry; the call's own address token
        pays for it). Anything else proves nothing and is charged to the sending address, so a
        forger cannot spend a hospital's budget or get it reported. The check goes through the
        node's signature cache, so the mempool does not verify the same signature again.
        """
        auth = self.auth
        tx_hash = sha256(raw)  # == tx.hash once decode accepts it: it accepts only the canonical encoding
        verified_before = tx_hash in auth.signatures
        if not verified_before:  # shed before decoding, verifying, or looking the hash up on disk
            self.api.check_room(sender_of(raw), len(raw))
        # Bytes verified before, or already in a block (public: anyone can replay them), are a retry the
        # call's address token pays for; the mempool then answers where they are.
        resent = verified_before or (auth.committed is not None and auth.committed(tx_hash) is not None)
        try:
            tx = Transaction.decode(raw, max_size=auth.max_tx_bytes)
        except FbciError:
            self.admission.check_unproven(ctx.client)
            raise
        if auth.chain_id is not None and tx.chain_id != auth.chain_id:
            self.admission.check_unproven(ctx.client)
            return
        if not auth.signatures.verify(tx, tx_hash, raw):
            self.admission.report(MISBEHAVIOUR_BAD_SIGNATURE, ctx.client)
            self.admission.check_unproven(ctx.client)
            raise BadSignature("the signature does not verify for this sender and body")
        if not resent:
            self.admission.check_signer(tx.sender.hex())

    async def status(self, p: NoParams, ctx: CallContext) -> NodeStatus:
        return await self.api.status()

    async def tx_submit(self, p: TxSubmitParams, ctx: CallContext) -> TxAccepted:
        self._authenticate(p.tx, ctx)
        return TxAccepted(await self.api.submit_tx(p.tx))

    async def tx_submit_commit(self, p: TxSubmitCommitParams, ctx: CallContext) -> TxCommitResult:
        self._authenticate(p.tx, ctx)
        try:
            # The node owns the timeout; this bound only keeps a stuck node from holding the connection forever.
            async with asyncio.timeout(p.timeout_s + 1.0):
                return await self.api.submit_tx_commit(p.tx, p.timeout_s)
        except TimeoutError:
            raise Timeout(f"not committed within {p.timeout_s} s; it may still be committed later") from None

    async def validators(self, p: NoParams, ctx: CallContext) -> list[ValidatorInfo]:
        return await self.api.validators()

    async def genesis(self, p: NoParams, ctx: CallContext) -> GenesisWithHash:
        return await self.api.genesis()

    async def account_get(self, p: AccountGetParams, ctx: CallContext) -> AccountInfo:
        return await self.api.account(p.public_key)

    def query(self, query: Query[Any, Any]) -> Handler:
        async def answer(p: Params, ctx: CallContext) -> object:
            """``prove`` changes how the answer is carried, not what is read: the read guard sees (and a
            signed request covers) the query's own params."""
            prove = bool(getattr(p, "prove", False))
            plain = p if not query.provable else query.params.model_validate(
                {name: getattr(p, name) for name in query.params.model_fields})

            async def ask(q: Params) -> object:
                if prove:
                    return await self.api.query(query.path, q, prove=True)
                return await self.api.query(query.path, q)

            result = await ask(plain) if self.reads is None else await self.reads.read(
                query, plain, ctx.auth, ctx.client, ask)
            if self.offload is None:
                return result
            # A page of alerts or rounds is milliseconds of serialising: not on the loop that carries consensus.
            return EncodedResult(await asyncio.get_running_loop().run_in_executor(
                self.offload, lambda: json_bytes(to_wire(result))))

        return answer

    async def subscribe(self, p: SubscribeParams, ctx: CallContext) -> str:
        session = _session(ctx, "subscribe")
        if self.reads is None:
            return session.subscribe(p.topic)

        async def ask(params: Params) -> str:
            return session.subscribe(p.topic)

        return str(await self.reads.subscribe(p.topic, p, ctx.auth, ctx.client, ask))

    async def unsubscribe(self, p: UnsubscribeParams, ctx: CallContext) -> bool:
        return _session(ctx, "unsubscribe").unsubscribe(p.subscription)


def _session(ctx: CallContext, method: str) -> SubscriptionSession:
    if ctx.session is None:
        raise MethodNotFound(f"{method} is only available over the websocket at GET /ws")
    return ctx.session


def _query_method(q: Query[Any, Any], h: _Handlers) -> Method:
    """A state query's method takes one more, optional, param: ``prove`` (last, for by-position calls)."""
    access = Access(q.access.roles, private=h.reads is not None and h.reads.is_private(q.path))
    if not q.provable:
        return Method(q.path, q.summary, q.params, q.result, h.query(q), access)
    params = create_model(f"{q.params.__name__}Provable", __base__=q.params, prove=(bool, Field(
        False, description="answer with a core.proofs.ProvenAnswer: the result, its state proof, the certified "
                           "header it proves against and that header's commit certificate")))
    return Method(q.path, q.summary + " With prove: true, checkable against a commit certificate.", params,
                  q.result | ProvenAnswer, h.query(q), access)


def build_methods(api: NodeApi, admission: Admission, queries: Iterable[Query[Any, Any]], *, max_tx_bytes: int,
                  chain_id: str | None = None, signatures: SignatureCheck | None = None,
                  reads: ReadGate | None = None, committed: CommittedLookup | None = None,
                  offload: Executor | None = None, blobs: BlobApi | None = None) -> dict[str, Method]:
    """The method table, without ``rpc_discover`` (the dispatcher adds it, since it describes this table).

    ``chain_id``, ``signatures`` and ``committed``: see :class:`TxAuth`; ``reads``: private reads (None: all open);
    ``offload``: where state queries' answers are serialised (None: on the event loop); ``blobs``: the blob
    store (None: no blob methods)."""
    h = _Handlers(api, admission, TxAuth(max_tx_bytes, chain_id, signatures or VerifyOnly(), committed), reads,
                  offload)
    table = [
        Method("status", "Height, latest block hash, view, peers, mempool size, sync state.", NoParams,
               NodeStatus, h.status),
        Method("tx_submit", "Admit a signed transaction to the mempool; returns its hash.", TxSubmitParams,
               TxAccepted, h.tx_submit),
        Method("tx_submit_commit", "Submit and wait until the transaction is in a committed block.",
               TxSubmitCommitParams, TxCommitResult, h.tx_submit_commit),
        Method("validators", "The current validator set.", NoParams, list[ValidatorInfo], h.validators),
        Method("genesis", "The genesis document and its hash.", NoParams, GenesisWithHash, h.genesis),
        Method("account_get", "Roles and next nonce of a public key (pending transactions counted).",
               AccountGetParams, AccountInfo, h.account_get),
        *(_query_method(q, h) for q in queries),
        Method("subscribe", "Websocket only: push 'new_block' or 'new_alert' events as 'subscription' "
               "notifications; returns the subscription id.", SubscribeParams, str, h.subscribe),
        Method("unsubscribe", "Websocket only: stop a subscription; returns whether it existed.",
               UnsubscribeParams, bool, h.unsubscribe),
        *(_blob_methods(blobs) if blobs is not None else ()),
    ]
    return {m.name: m for m in table}


def _blob_methods(blobs: BlobApi) -> list[Method]:
    async def put(p: BlobPutParams, ctx: CallContext) -> BlobPutResult:
        return await blobs.put(p, ctx.client)

    async def status(p: BlobRefParams, ctx: CallContext) -> BlobStatus:
        return await blobs.status(p)

    async def get(p: ChunkParams, ctx: CallContext) -> EncodedResult:
        return EncodedResult((await blobs.get(p)).to_json())

    return [
        Method(BLOB_PUT, "Store one chunk of a blob (checked against chunk_root first; idempotent); says whether "
               "the blob is complete here.", BlobPutParams, BlobPutResult, put),
        Method(BLOB_STATUS, "Which chunks of a blob this node holds: resume an upload from here.", BlobRefParams,
               BlobStatus, status),
        Method(BLOB_GET, "One chunk of a complete blob with its proof against chunk_root.", ChunkParams, BlobChunk,
               get),
    ]
