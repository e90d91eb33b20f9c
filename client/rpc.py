"""Async JSON-RPC client for a validator, its blocking facade for CLIs, and a nonce helper.

Errors come back as the same :mod:`core.errors` class the node raised, chosen
by ``data.reason`` and, failing that, by code, from the one table in
``core.errors``; so ``except BadNonce`` works across the wire. Every result
comes back as the type its one definition declares (``core.api``, and the
leaves' query modules for FL models, rounds and alerts), with real ``bytes``:
:meth:`RpcClient.query` reads any :class:`core.api.Query` back through it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from pydantic import ValidationError

from core.api import (
    BLOCK_GET, TX_GET, AccountInfo, BlockGetParams, BlockInfo, NodeStatus, NoParams, Params, Query, Receipt,
    TxAccepted, TxCommitResult, TxGetParams, TxInfo,
)
from core.crypto import PrivateKey
from core.errors import ERRORS_BY_CODE, ERRORS_BY_REASON, FbciError, NodeUnreachable, ProofInvalid
from core.proofs import ProvenAnswer
from core.readauth import AUTH_PARAM, sign_read
from core.tx import Transaction
from core.wire import from_wire
from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.queries import FL_MODEL_GET, FL_MODELS, FL_ROUNDS, ModelGetParams, RegisteredModel, RoundsParams
from genesis.schema import GenesisWithHash, ValidatorInfo
from ids.queries import ALERTS_QUERY, AlertPage, AlertsQueryParams

T = TypeVar("T")
P = TypeVar("P", bound=Params)
PROVE_PARAM = "prove"
"""Asks for a proven answer; it changes how a read is carried, so a read's signature leaves it out."""
R = TypeVar("R")


def error_from_json(error: Any) -> FbciError:
    """The exception for a JSON-RPC error object: by ``data.reason``, else by code, else ``FbciError``."""
    if not isinstance(error, dict):
        return FbciError(f"malformed JSON-RPC error: {error!r}")
    data = dict(error.get("data") or {}) if isinstance(error.get("data"), dict) else {}
    cls = ERRORS_BY_REASON.get(data.pop("reason", None)) or ERRORS_BY_CODE.get(error.get("code")) or FbciError
    return cls(str(error.get("message", "")), data=data)


def receipt_error(receipt: Receipt, tx_hash: bytes) -> FbciError:
    """The error class a rejected receipt names, so a caller sees ``error[<code> <reason>]``."""
    return error_from_json({"code": receipt.code, "message": receipt.message,
                            "data": {**receipt.result, "reason": receipt.reason, "hash": tx_hash.hex(),
                                     "height": receipt.height}})


def unreachable(url: str, exc: aiohttp.ClientConnectionError) -> NodeUnreachable:
    """The error for a failed connection to ``url``: plain when nothing listens, else with aiohttp's detail."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NodeUnreachable(f"no validator answers at {url}; is it running?")
    return NodeUnreachable(f"lost the connection to the validator at {url} ({exc}); is it running?")


class RpcClient:
    """``async with RpcClient("http://127.0.0.1:26657") as node: await node.status()``."""

    def __init__(self, url: str, *, timeout_s: float = 60.0, reader: PrivateKey | None = None) -> None:
        """``reader``: sign every query with this key (``core.readauth``), as private reads require."""
        base = url.rstrip("/").removesuffix("/rpc")
        self.rpc_url = f"{base}/rpc"
        self.ws_url = f"{base}/ws"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self.reader = reader
        self._chain_id: str | None = None
        self._methods: dict[str, dict[str, Any]] | None = None

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _post(self, payload: Any) -> Any:
        async with self._http().post(self.rpc_url, json=payload) as resp:
            if resp.status == 204:
                return None
            try:
                return await resp.json(content_type=None)
            except ValueError:
                raise FbciError(f"HTTP {resp.status} from {self.rpc_url} is not a JSON-RPC response") from None

    def _request(self, method: str, params: Any) -> dict[str, Any]:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": next(self._ids)}
        if params is not None:
            request["params"] = params
        return request

    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """One call; returns ``result`` or raises the matching error class."""
        response = await self._post(self._request(method, params))
        if not isinstance(response, dict):
            raise FbciError(f"unexpected response to {method}: {response!r}")
        if "error" in response:
            raise error_from_json(response["error"])
        return response.get("result")

    async def batch(self, calls: Sequence[tuple[str, dict[str, Any] | list[Any] | None]]) -> list[Any]:
        """Results in call order; a failed call's slot holds its exception instance (not raised).

        Raises when the node refused the batch as a whole (too long, rate limited).
        """
        requests = [self._request(method, params) for method, params in calls]
        response = await self._post(requests)
        if isinstance(response, dict) and "error" in response:
            raise error_from_json(response["error"])
        by_id = {r.get("id"): r for r in response or [] if isinstance(r, dict)}
        results: list[Any] = []
        for request in requests:
            answer = by_id.get(request["id"])
            if answer is None:
                results.append(FbciError(f"no answer for {request['method']}"))
            elif "error" in answer:
                results.append(error_from_json(answer["error"]))
            else:
                results.append(answer.get("result"))
        return results

    async def query(self, query: Query[P, R], params: P) -> R:
        """Any read of chain state, sent and read back through its one definition (signed with ``reader``)."""
        return query.parse(await self.call(query.path, await self.signed_params(query.path, params)))

    async def signed_params(self, method: str, params: Params | dict[str, Any]) -> dict[str, Any]:
        """``params`` as by-name JSON, with ``auth`` (a signed read request) when this client has a reader key."""
        body = params if isinstance(params, dict) else params.model_dump(mode="json")
        if self.reader is None:
            return body
        if self._chain_id is None:
            self._chain_id = (await self.status()).chain_id
        auth = sign_read(self.reader, self._chain_id, method, body, time.time_ns() // 1_000_000)
        return {**body, AUTH_PARAM: auth.model_dump(mode="json")}

    async def call_read(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """Any method by name, signed with ``reader`` when the node's OpenRPC document marks it private
        (``x-access``): for a caller that has no typed :class:`Query`, such as ``fbci rpc call``. The
        signature covers the method's whole params model, so each param the caller omits is filled with
        the default the document declares (``prove`` stays outside the signature, as in :meth:`prove`)."""
        if self.reader is None or not isinstance(params, dict | None):
            return await self.call(method, params)
        entry = (await self._described()).get(method)
        if entry is None or not entry.get("x-access", {}).get("private"):
            return await self.call(method, params)
        given = dict(params or {})
        carried = {PROVE_PARAM: given.pop(PROVE_PARAM)} if PROVE_PARAM in given else {}
        defaults = {p["name"]: p["schema"]["default"] for p in entry["params"]
                    if p["name"] not in (AUTH_PARAM, PROVE_PARAM) and "default" in p["schema"]}
        return await self.call(method, {**await self.signed_params(method, {**defaults, **given}), **carried})

    async def _described(self) -> dict[str, dict[str, Any]]:
        if self._methods is None:
            self._methods = {m["name"]: m for m in (await self.discover())["methods"]}
        return self._methods

    async def prove(self, query: Query[P, R], params: P) -> ProvenAnswer:
        """The same read with ``prove: true``, unchecked (``client.light`` checks it); the signature of a
        private read covers the query's params, not ``prove``."""
        try:
            answer: ProvenAnswer = from_wire(ProvenAnswer, await self.call(
                query.path, {**await self.signed_params(query.path, params), PROVE_PARAM: True}))
        except ValidationError as exc:
            raise ProofInvalid(f"the answer to {query.path} is not a proven answer: {exc.error_count()} errors"
                               ) from None
        return answer

    async def status(self) -> NodeStatus:
        result: NodeStatus = from_wire(NodeStatus, await self.call("status"))
        return result

    async def submit_tx(self, tx: Transaction) -> bytes:
        """Returns the hash once the transaction is in the node's mempool."""
        accepted: TxAccepted = from_wire(TxAccepted, await self.call("tx_submit", {"tx": tx.encode().hex()}))
        return accepted.hash

    async def submit_tx_commit(self, tx: Transaction, timeout_s: float = 30.0) -> TxCommitResult:
        """Returns once the transaction is committed; raises ``Timeout`` after ``timeout_s``."""
        result = await self.call("tx_submit_commit", {"tx": tx.encode().hex(), "timeout_s": timeout_s})
        committed: TxCommitResult = from_wire(TxCommitResult, result)
        return committed

    async def get_tx(self, tx_hash: bytes) -> TxInfo:
        return await self.query(TX_GET, TxGetParams(hash=tx_hash))

    async def get_block(self, height: int | None = None, block_hash: bytes | None = None) -> BlockInfo:
        return await self.query(BLOCK_GET, BlockGetParams(height=height, hash=block_hash))

    async def validators(self) -> list[ValidatorInfo]:
        result: list[ValidatorInfo] = from_wire(list[ValidatorInfo], await self.call("validators"))
        return result

    async def genesis(self) -> GenesisWithHash:
        result: GenesisWithHash = from_wire(GenesisWithHash, await self.call("genesis"))
        return result

    async def account_get(self, public_key: bytes) -> AccountInfo:
        result: AccountInfo = from_wire(AccountInfo, await self.call("account_get", {"public_key": public_key.hex()}))
        return result

    async def alerts_query(self, **filters: Any) -> AlertPage:
        """Keyword filters as in :class:`ids.queries.AlertsQueryParams` (``subject`` as bytes)."""
        return await self.query(ALERTS_QUERY, AlertsQueryParams(**filters))

    async def fl_models(self) -> list[RegisteredModel]:
        return await self.query(FL_MODELS, NoParams())

    async def fl_model_get(self, model_id: str, version: int | None = None) -> ModelVersion:
        return await self.query(FL_MODEL_GET, ModelGetParams(model_id=model_id, version=version))

    async def fl_rounds(self, model_id: str, from_round: int | None = None, limit: int = 100) -> list[RoundRecord]:
        """One page (:class:`fl_contracts.queries.RoundsParams`): by default the newest rounds, the open one last."""
        return await self.query(FL_ROUNDS, RoundsParams(model_id=model_id, from_round=from_round, limit=limit))

    async def discover(self) -> dict[str, Any]:
        """The node's OpenRPC document."""
        return await self.call("rpc_discover")

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """``async with node.subscribe("new_block") as events: async for event in events: ...``.

        The iterator raises ``ConnectionError`` when the node closes the
        connection (shutdown, or this client read too slowly and was cut off).
        """
        async with self._http().ws_connect(self.ws_url) as ws:
            request = self._request("subscribe", await self.signed_params("subscribe", {"topic": topic}))
            await ws.send_json(request)
            while (answer := await ws.receive_json()).get("id") != request["id"]:
                continue
            if "error" in answer:
                raise error_from_json(answer["error"])
            yield _events(ws, answer["result"])


async def _events(ws: aiohttp.ClientWebSocketResponse, subscription: str) -> AsyncIterator[dict[str, Any]]:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            note = msg.json()
            params = note.get("params") if isinstance(note, dict) else None
            if isinstance(params, dict) and params.get("subscription") == subscription:
                yield params["result"]
    raise ConnectionError(f"the node closed the subscription (close code {ws.close_code})")


MAX_RETRY_AFTER_S = 30.0


def retry_after_s(refusal: FbciError) -> float:
    """How long to wait before resubmitting after ``refusal``: the node's ``retry_after_ms`` hint (a full
    mempool's estimate from its drain rate), bounded so a wrong or hostile hint cannot park a client."""
    hint = refusal.data.get("retry_after_ms")
    if not isinstance(hint, int | float) or isinstance(hint, bool) or hint != hint:
        return 1.0
    return min(max(hint / 1000, 0.0), MAX_RETRY_AFTER_S)


class NonceTracker:
    """Consecutive nonces for one signing key, starting from the node's ``next_nonce``.

    Call :meth:`forget` after a ``BadNonce`` (another process used the key, or
    a transaction was dropped) so the next :meth:`next` asks the node again,
    and :meth:`refused` after a ``MempoolFull``: the refused nonce is free
    again, and the refusal names the nonce the node expects.
    """

    def __init__(self, client: RpcClient, public_key: bytes) -> None:
        self._client = client
        self._public_key = public_key
        self._next: int | None = None

    async def next(self) -> int:
        if self._next is None:
            self._next = (await self._client.account_get(self._public_key)).next_nonce
        nonce, self._next = self._next, self._next + 1
        return nonce

    def forget(self) -> None:
        self._next = None

    def refused(self, refusal: FbciError) -> None:
        """Resume from the node's ``next_nonce`` in ``refusal`` (or ask again): no gap after the refused one."""
        expected = refusal.data.get("next_nonce")
        self._next = expected if isinstance(expected, int) and not isinstance(expected, bool) and expected > 0 else None


class SyncRpcClient:
    """Blocking facade for command-line tools: each call runs in its own short event loop.

    Not for use inside a running event loop (``asyncio.run`` refuses); use :class:`RpcClient` there.
    """

    def __init__(self, url: str, *, timeout_s: float = 60.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def _run(self, fn: Callable[[RpcClient], Awaitable[T]]) -> T:
        async def once() -> T:
            async with RpcClient(self.url, timeout_s=self.timeout_s) as client:
                return await fn(client)

        return asyncio.run(once())

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        return self._run(lambda c: c.call(method, params))

    def status(self) -> NodeStatus:
        return self._run(lambda c: c.status())

    def submit_tx(self, tx: Transaction) -> bytes:
        return self._run(lambda c: c.submit_tx(tx))

    def submit_tx_commit(self, tx: Transaction, timeout_s: float = 30.0) -> TxCommitResult:
        return self._run(lambda c: c.submit_tx_commit(tx, timeout_s))

    def account_get(self, public_key: bytes) -> AccountInfo:
        return self._run(lambda c: c.account_get(public_key))


def submit_tx(rpc_url: str, key: Any, kind: str, payload: dict[str, Any], *, commit: bool = False,
              timeout_s: float = 30.0) -> dict[str, Any]:
    """``fbci tx submit``: sign ``payload`` with ``key`` (a ``core.crypto.PrivateKey``) at the key's next nonce.

    The node supplies the chain id (``status``) and the nonce (``account_get``,
    which counts this key's pending transactions). Without ``commit`` the
    answer is the hash once the transaction is in the mempool; with it, the
    height, index and execution result once it is committed. A transaction
    the chain executed but rejected raises the receipt's error class, so the
    caller sees ``error[<code> <reason>]`` rather than a successful-looking reply.
    """

    payload = hex_to_bytes(payload)

    async def run() -> dict[str, Any]:
        async with RpcClient(rpc_url, timeout_s=timeout_s + 10.0) as client:
            chain_id = (await client.status()).chain_id
            nonce = (await client.account_get(key.public_key.raw)).next_nonce
            tx = Transaction.create(key, chain_id, nonce, kind, payload)
            if not commit:
                return {"hash": (await client.submit_tx(tx)).hex(), "nonce": nonce, "committed": False}
            result = await client.submit_tx_commit(tx, timeout_s)
            receipt = result.receipt
            if not receipt.ok:
                raise receipt_error(receipt, result.hash)
            return {"hash": result.hash.hex(), "nonce": nonce, "committed": True, "height": result.height,
                    "index": result.index, "result": receipt.result}

    try:
        return asyncio.run(run())
    except aiohttp.ClientConnectionError as exc:
        raise unreachable(rpc_url, exc) from None
    except asyncio.TimeoutError:
        raise FbciError(f"the node at {rpc_url} did not answer within {timeout_s + 10.0:g} s") from None


def hex_to_bytes(value: Any) -> Any:
    """``"0x<even-length hex>"`` strings become bytes, recursively; everything else is unchanged."""
    if isinstance(value, str) and value.startswith("0x") and len(value) % 2 == 0:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: hex_to_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hex_to_bytes(v) for v in value]
    return value
