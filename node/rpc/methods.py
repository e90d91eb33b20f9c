"""The RPC methods: one pydantic params model and one handler each, in one table.

The params models are the single source of truth for validation (strict
types, unknown names refused) and for the OpenRPC document, which is generated
from them. Field order is the positional order for by-position params.
Handlers translate params into :class:`~node.rpc.api.NodeApi` calls and do
only edge work themselves: decoding a submitted transaction far enough to
rate-limit its signer and reporting bad signatures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import BadSignature, InvalidInput, Timeout
from core.tx import Transaction
from node.rpc.admission import Admission
from node.rpc.api import (MISBEHAVIOUR_BAD_SIGNATURE, AccountInfo, AlertPage, AlertQuery, NodeApi, NodeStatus,
                          TxAccepted, TxCommitResult)
from node.rpc.encoding import Hash32, HexBytes
from node.rpc.errors import MethodNotFound
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


class Params(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoParams(Params):
    pass


class TxSubmitParams(Params):
    tx: HexBytes = Field(description="canonical encoding of a signed core.tx.Transaction, hex")


class TxSubmitCommitParams(TxSubmitParams):
    timeout_s: float = Field(30.0, gt=0, le=300, description="give up waiting for the commit after this long")


class TxGetParams(Params):
    hash: Hash32 = Field(description="transaction hash (SHA-256 of its encoding), hex")


class BlockGetParams(Params):
    height: int | None = Field(None, ge=0, description="block height; omit both fields for the latest block")
    hash: Hash32 | None = Field(None, description="block hash, hex")

    @model_validator(mode="after")
    def _height_or_hash(self) -> BlockGetParams:
        if self.height is not None and self.hash is not None:
            raise ValueError("give 'height' or 'hash', not both")
        return self


class AccountGetParams(Params):
    public_key: Hash32 = Field(description="Ed25519 public key, hex")


class AlertsQueryParams(Params):
    hospital: str | None = Field(None, max_length=64, description="reporting hospital (validator or gateway name)")
    subject: Hash32 | None = Field(None, description="device pseudonym, client key or hashed address, hex")
    alert_class: str | None = Field(None, max_length=64, description="e.g. 'spoofing', 'request_flood'")
    min_severity: int | None = Field(None, ge=1, le=4, description="1 low .. 4 critical")
    from_height: int | None = Field(None, ge=0, description="inclusive")
    to_height: int | None = Field(None, ge=0, description="inclusive")
    cursor: str | None = Field(None, max_length=256, description="next_cursor from the previous page")
    limit: int = Field(100, ge=1, le=500)


class FlModelGetParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    version: int | None = Field(None, ge=0, description="omit for the latest version")


class FlRoundsParams(Params):
    model_id: str = Field(min_length=1, max_length=128)


class SubscribeParams(Params):
    topic: Literal[tuple(sorted(TOPICS))] = Field(description="websocket only")  # type: ignore[valid-type]


class UnsubscribeParams(Params):
    subscription: str = Field(max_length=64, description="the id subscribe returned")


Handler = Callable[[Any, CallContext], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    params: type[Params]
    result: Any
    """The result's Python type; its JSON schema goes into the OpenRPC document."""
    handler: Handler


class _Handlers:
    """Closures over the node and the admission policy, one per method."""

    def __init__(self, api: NodeApi, admission: Admission, max_tx_bytes: int) -> None:
        self.api = api
        self.admission = admission
        self.max_tx_bytes = max_tx_bytes

    def _check_tx(self, raw: bytes) -> None:
        """Charge the signer's rate limit. Only the sender is needed here, and the node decodes
        and checks the whole transaction right after, so it is read off the front of the
        encoding when that is laid out as expected; anything else gets the full decode and its error."""
        sender = _leading_sender(raw) if len(raw) <= self.max_tx_bytes else None
        if sender is None:
            sender = Transaction.decode(raw, max_size=self.max_tx_bytes).sender
        self.admission.check_signer(sender.hex())

    async def _reporting_bad_signature(self, call: Awaitable[Any], ctx: CallContext) -> Any:
        try:
            return await call
        except BadSignature:
            self.admission.report(MISBEHAVIOUR_BAD_SIGNATURE, ctx.client)
            raise

    async def status(self, p: NoParams, ctx: CallContext) -> NodeStatus:
        return await self.api.status()

    async def tx_submit(self, p: TxSubmitParams, ctx: CallContext) -> TxAccepted:
        self._check_tx(p.tx)
        return TxAccepted(await self._reporting_bad_signature(self.api.submit_tx(p.tx), ctx))

    async def tx_submit_commit(self, p: TxSubmitCommitParams, ctx: CallContext) -> TxCommitResult:
        self._check_tx(p.tx)
        try:
            # The node owns the timeout; this bound only keeps a stuck node from holding the connection forever.
            async with asyncio.timeout(p.timeout_s + 1.0):
                return await self._reporting_bad_signature(self.api.submit_tx_commit(p.tx, p.timeout_s), ctx)
        except TimeoutError:
            raise Timeout(f"not committed within {p.timeout_s} s; it may still be committed later") from None

    async def tx_get(self, p: TxGetParams, ctx: CallContext) -> dict[str, Any]:
        return await self.api.get_tx(p.hash)

    async def block_get(self, p: BlockGetParams, ctx: CallContext) -> dict[str, Any]:
        return await self.api.get_block(p.height, p.hash)

    async def validators(self, p: NoParams, ctx: CallContext) -> list[dict[str, Any]]:
        return await self.api.validators()

    async def genesis(self, p: NoParams, ctx: CallContext) -> dict[str, Any]:
        return await self.api.genesis()

    async def account_get(self, p: AccountGetParams, ctx: CallContext) -> AccountInfo:
        return await self.api.account(p.public_key)

    async def alerts_query(self, p: AlertsQueryParams, ctx: CallContext) -> AlertPage:
        if p.from_height is not None and p.to_height is not None and p.from_height > p.to_height:
            raise InvalidInput("'from_height' is above 'to_height'", data={"param": "from_height"})
        return await self.api.query_alerts(AlertQuery(**dict(p)))  # dict(): raw bytes, not the hex serialisation

    async def fl_models(self, p: NoParams, ctx: CallContext) -> list[dict[str, Any]]:
        return await self.api.fl_models()

    async def fl_model_get(self, p: FlModelGetParams, ctx: CallContext) -> dict[str, Any]:
        return await self.api.fl_model_get(p.model_id, p.version)

    async def fl_rounds(self, p: FlRoundsParams, ctx: CallContext) -> list[dict[str, Any]]:
        return await self.api.fl_rounds(p.model_id)

    async def subscribe(self, p: SubscribeParams, ctx: CallContext) -> str:
        return _session(ctx, "subscribe").subscribe(p.topic)

    async def unsubscribe(self, p: UnsubscribeParams, ctx: CallContext) -> bool:
        return _session(ctx, "unsubscribe").unsubscribe(p.subscription)


def _leading_sender(raw: bytes) -> bytes | None:
    """The sender of an encoded ``[chain_id, sender, ...]`` transaction, or None if it does not start
    with a 6-array, a str (fixstr or str8) and a 32-byte bin8."""
    if len(raw) < 36 or raw[0] != 0x96:
        return None
    head = raw[1]
    if 0xA0 <= head <= 0xBF:
        at = 2 + (head & 0x1F)
    elif head == 0xD9:
        at = 3 + raw[2]
    else:
        return None
    if raw[at:at + 2] != b"\xc4\x20" or len(raw) < at + 34:
        return None
    return raw[at + 2:at + 34]


def _session(ctx: CallContext, method: str) -> SubscriptionSession:
    if ctx.session is None:
        raise MethodNotFound(f"{method} is only available over the websocket at GET /ws")
    return ctx.session


def build_methods(api: NodeApi, admission: Admission, *, max_tx_bytes: int) -> dict[str, Method]:
    """The method table, without ``rpc_discover`` (the dispatcher adds it, since it describes this table)."""
    h = _Handlers(api, admission, max_tx_bytes)
    table = [
        Method("status", "Height, latest block hash, view, peers, mempool size, sync state.", NoParams,
               NodeStatus, h.status),
        Method("tx_submit", "Admit a signed transaction to the mempool; returns its hash.", TxSubmitParams,
               TxAccepted, h.tx_submit),
        Method("tx_submit_commit", "Submit and wait until the transaction is in a committed block.",
               TxSubmitCommitParams, TxCommitResult, h.tx_submit_commit),
        Method("tx_get", "A committed transaction with its height, index and receipt.", TxGetParams,
               dict[str, Any], h.tx_get),
        Method("block_get", "A block with its commit certificate, by height or hash (default: latest).",
               BlockGetParams, dict[str, Any], h.block_get),
        Method("validators", "The current validator set.", NoParams, list[dict[str, Any]], h.validators),
        Method("genesis", "The genesis document.", NoParams, dict[str, Any], h.genesis),
        Method("account_get", "Roles and next nonce of a public key.", AccountGetParams, AccountInfo,
               h.account_get),
        Method("alerts_query", "IDS alerts matching the filters, oldest first, one page at a time.",
               AlertsQueryParams, AlertPage, h.alerts_query),
        Method("fl_models", "Registered federated-learning models.", NoParams, list[dict[str, Any]], h.fl_models),
        Method("fl_model_get", "One version of a global model (default: latest).", FlModelGetParams,
               dict[str, Any], h.fl_model_get),
        Method("fl_rounds", "Round history of a model, oldest first.", FlRoundsParams, list[dict[str, Any]],
               h.fl_rounds),
        Method("subscribe", "Websocket only: push 'new_block' or 'new_alert' events as 'subscription' "
               "notifications; returns the subscription id.", SubscribeParams, str, h.subscribe),
        Method("unsubscribe", "Websocket only: stop a subscription; returns whether it existed.",
               UnsubscribeParams, bool, h.unsubscribe),
    ]
    return {m.name: m for m in table}
