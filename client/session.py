"""Blocking client sessions on a validator's JSON-RPC, and the chain :class:`~client.fl.hospital.Transport`.

``fbci fl train``, ``fbci ids watch``, ``fbci predict``, the integration
tests and the benchmarks share this one way of talking to a node from
ordinary (threaded, non-async) code:

- :class:`ChainSession` owns a private event loop and one HTTP session, so a
  thread can make many calls without a loop or connection per call. A
  session is confined to the thread that uses it; threads that share a key
  share its nonce lock (:func:`_key_lock`), so two training jobs of one
  hospital never race for a nonce.
- Submitting is admission (``tx_submit``, under the key's lock: the node's
  ``next_nonce`` counts pending transactions) then waiting for the commit
  outside the lock: a ``new_block`` subscription wakes the waiter, which asks
  ``tx_get``. A rejected receipt raises the error class the chain reported.
- :class:`ChainTransport` is the JSON-RPC ``Transport``: the open round and
  the version it is based on are read together (``fl_rounds``, then that
  exact version), so a round closing between two calls cannot mismatch them.

Nothing here imports torch (``client.fl.hospital`` does, so only :meth:`ChainTransport.get_model`
imports it): ``fbci ids watch`` and ``fbci predict`` use this module.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from core.crypto import PrivateKey
from core.errors import BadNonce, InvalidInput, MempoolFull, NotFound, RateLimited, Timeout
from core.tx import Transaction
from core.api import NoParams, Params, Query, TxInfo
from consent.queries import CONSENT_CHECK, CONSENT_POLICY, CheckParams
from consent.record import Verdict
from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.queries import FL_MODEL_GET, FL_MODELS, FL_ROUNDS, ModelGetParams, RoundsParams
from fl_contracts.spec import ModelSpec
from client.light import LightClient
from client.rpc import RpcClient, receipt_error, retry_after_s, unreachable
from genesis.create import DEFAULT_RPC
from genesis.home import load_config
from genesis.schema import GenesisDoc

if TYPE_CHECKING:  # client.fl.hospital imports the torch trainer; gateways and predict must not
    from client.fl.hospital import ChainModel

T = TypeVar("T")
P = TypeVar("P", bound=Params)
R = TypeVar("R")
DEFAULT_COMMIT_TIMEOUT_S = 60.0
RATE_LIMIT_RETRIES = 50
KEEPALIVE_S = 5.0
"""Reuse an idle connection only this long: under the node's 10 s (``RpcLimits.header_timeout_s``). The
session's loop runs only during a call, so it never sees the node close an idle connection; without
this bound the next call after a pause (a training round) writes into a closed socket."""

_KEY_LOCKS: dict[bytes, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(public_key: bytes) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(public_key, threading.Lock())


def load_client_key(key: str, home: str | Path | None) -> PrivateKey:
    """``key`` is a key file, or a key name in ``HOME/keys`` (``hospital`` -> ``HOME/keys/hospital.json``)."""
    candidate = Path(key)
    if not candidate.exists() and home is not None:
        candidate = Path(home) / "keys" / f"{key}.json"
    if not candidate.exists():
        where = f" (nor {Path(home) / 'keys' / (key + '.json')})" if home is not None else " (pass --home DIR)"
        raise InvalidInput(f"--key: no key file {key!r}{where}")
    return PrivateKey.load(candidate)


READER_KEYS = ("hospital", "gateway", "admin")
"""Which of a home's client keys signs reads when the user names none: the first one the home holds."""


def reader_key(key: str | None, home: str | Path | None) -> PrivateKey | None:
    """The key that signs private reads (genesis ``read_policy``): ``key``, else the first of
    :data:`READER_KEYS` in ``HOME/keys``, else None (then only open reads are answered)."""
    if key is not None:
        return load_client_key(key, home)
    for name in READER_KEYS:
        if home is not None and (Path(home) / "keys" / f"{name}.json").exists():
            return load_client_key(name, home)
    return None


def resolve_rpc_url(rpc: str | None, home: str | Path | None) -> str:
    """``--rpc``, else the RPC address in ``HOME/config``, else the default local node."""
    url = rpc or (load_config(Path(home)).rpc_url() if home is not None else DEFAULT_RPC)
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(f"--rpc: {url!r} must be an http:// or https:// URL")
    return url


class _BoundClient(RpcClient):
    """An :class:`RpcClient` whose connections leave from ``local_addr`` (e.g. 127.0.0.2 on loopback)."""

    def __init__(self, url: str, *, timeout_s: float, local_addr: str | None, reader: PrivateKey | None = None) -> None:
        super().__init__(url, timeout_s=timeout_s, reader=reader)
        self._local_addr = local_addr

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S,
                                             local_addr=(self._local_addr, 0) if self._local_addr else None)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session


class ChainSession:
    """A blocking, thread-confined session on one validator, optionally signing with ``key`` (its
    transactions, and its reads: a private read is answered only for a signed request).

    Reads of the FL contract go through a :class:`client.light.LightClient` (``verify``, the default):
    checked against commit certificates of the ``genesis`` validator set, falling back to the
    ``fallback_urls``. Without ``genesis`` the session trusts the genesis its validator serves."""

    def __init__(self, rpc_url: str, key: PrivateKey | None = None, *, timeout_s: float = 60.0,
                 local_addr: str | None = None, verify: bool = True, genesis: GenesisDoc | None = None,
                 fallback_urls: Sequence[str] = ()) -> None:
        self.rpc_url = rpc_url
        self.key = key
        self._runner = asyncio.Runner()
        self.client = _BoundClient(rpc_url, timeout_s=timeout_s, local_addr=local_addr, reader=key)
        self._chain_id: str | None = None
        self._specs: dict[str, ModelSpec] = {}
        self.verify = verify
        self._genesis = genesis
        self._fallbacks = [RpcClient(url, timeout_s=timeout_s, reader=key) for url in fallback_urls]
        self._light: LightClient | None = None
        self.seen_height = 0
        """The highest height this session saw something commit at (its own transactions, closed rounds,
        the head when it started): verified reads cover at least it."""

    def __enter__(self) -> ChainSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for client in (self.client, *self._fallbacks):
                self._runner.run(client.close())
        finally:
            self._runner.close()

    def run(self, fn: Callable[[RpcClient], Awaitable[T]]) -> T:
        """Run ``fn(client)`` on this session's loop; connection failures become a clear ``FbciError``."""
        try:
            return self._runner.run(fn(self.client))
        except aiohttp.ClientConnectionError as exc:
            raise unreachable(self.rpc_url, exc) from None
        except asyncio.TimeoutError:
            raise Timeout(f"the node at {self.rpc_url} did not answer in time") from None

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """Any method by name; a private read is signed with this session's key (``RpcClient.call_read``)."""
        return self.run(lambda c: c.call_read(method, params))

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = self.run(lambda c: c.status()).chain_id
        return self._chain_id

    # -- transactions ------------------------------------------------------------------------

    def _signer(self) -> PrivateKey:
        if self.key is None:
            raise InvalidInput("this session has no signing key")
        return self.key

    def submit(self, kind: str, payload: dict[str, Any]) -> bytes:
        """Sign with the next nonce and admit to the node's mempool; returns the tx hash.

        Retries a ``BadNonce`` once (the key was used elsewhere), backs off on
        ``RateLimited``, and on ``MempoolFull`` waits the ``retry_after_ms`` the
        node derived from its drain rate. Each attempt signs at the node's
        ``next_nonce`` again, so a refusal never leaves this key a nonce gap.
        """
        key = self._signer()
        pub = key.public_key.raw
        with _key_lock(pub):
            for attempt in range(RATE_LIMIT_RETRIES):
                nonce = self.run(lambda c: c.account_get(pub)).next_nonce
                tx = Transaction.create(key, self.chain_id, nonce, kind, payload)
                try:
                    return self.run(lambda c: c.submit_tx(tx))
                except BadNonce:
                    if attempt:
                        raise
                except RateLimited:
                    time.sleep(0.05 * (attempt + 1))  # client back-off the node asked for, not synchronisation
                except MempoolFull as full:
                    time.sleep(retry_after_s(full))  # the node's own estimate of when it has room
            raise RateLimited(f"{self.rpc_url} kept refusing: rate limited or mempool full")

    def wait_committed(self, tx_hash: bytes, timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S) -> TxInfo:
        """The committed tx (``tx_get``); raises the receipt's error if execution rejected it."""
        info = self.run(lambda c: _wait_until(c, lambda: _committed(c, tx_hash), timeout_s,
                                              f"transaction {tx_hash.hex()} not committed"))
        self.seen_height = max(self.seen_height, info.receipt.height)
        if not info.receipt.ok:
            raise receipt_error(info.receipt, tx_hash)
        return info

    def submit_commit(self, kind: str, payload: dict[str, Any], timeout_s: float = DEFAULT_COMMIT_TIMEOUT_S
                      ) -> TxInfo:
        return self.wait_committed(self.submit(kind, payload), timeout_s)

    # -- verified reads -----------------------------------------------------------------------

    def light(self) -> LightClient:
        if self._light is None:
            doc = self._genesis or self.run(lambda c: c.genesis()).genesis
            light = LightClient.from_genesis(doc, [self.client, *self._fallbacks])
            # a session sees at least what was committed before it started (one block's wait, once)
            self.seen_height = max(self.seen_height, self.run(lambda _: light.sync_head()))
            self._light = light
        return self._light

    def read(self, query: Query[P, R], params: P) -> R:
        """A read of chain state: verified by the light client unless ``verify`` is off."""
        if not self.verify:
            return self.run(lambda c: c.query(query, params))
        light = self.light()
        return self.run(lambda _: light.query(query, params, min_state_height=self.seen_height))

    # -- federated learning ------------------------------------------------------------------

    def spec(self, model_id: str) -> ModelSpec:
        if model_id not in self._specs:
            for registered in self.read(FL_MODELS, NoParams()):
                self._specs[registered.spec.id] = registered.spec
            if model_id not in self._specs:
                raise NotFound(f"no model {model_id!r} on chain (models: {', '.join(sorted(self._specs)) or 'none'})")
        return self._specs[model_id]

    def consent_required(self, model_id: str) -> bool:
        """Whether the chain's genesis policy makes ``model_id``'s updates list consented patients."""
        required = self.run(lambda c: c.query(CONSENT_POLICY, NoParams()))
        return "*" in required or model_id in required

    def rounds(self, model_id: str) -> list[RoundRecord]:
        return self.read(FL_ROUNDS, RoundsParams(model_id=model_id))

    def model_version(self, model_id: str, version: int | None = None, *, patient: bytes | None = None
                      ) -> ModelVersion:
        """``patient``: the pseudonym this version will score, so the read is audited as that patient's prediction."""
        return self.read(FL_MODEL_GET, ModelGetParams(model_id=model_id, version=version, patient=patient))

    def model_weights(self, model_id: str, version: int | None = None, *, patient: bytes | None = None
                      ) -> tuple[ModelVersion, dict[str, Any]]:
        """A committed version and its real-valued tensors by layout name (numpy; for inference)."""
        mv = self.model_version(model_id, version, patient=patient)
        return mv, mv.unflatten(self.spec(model_id))


async def _committed(client: RpcClient, tx_hash: bytes) -> TxInfo | None:
    try:
        return await client.get_tx(tx_hash)
    except NotFound:
        return None


async def _wait_until(client: RpcClient, probe: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    """Check ``probe`` now and after every new block until it answers, or raise ``Timeout``.

    Subscribing before the first check means no block can slip between them.
    """
    async def watch() -> T:
        async with client.subscribe("new_block") as blocks:
            if (found := await probe()) is not None:
                return found
            async for _ in blocks:
                if (found := await probe()) is not None:
                    return found
        raise ConnectionError("subscription ended")  # pragma: no cover - _events raises first

    try:
        return await asyncio.wait_for(watch(), timeout_s)
    except asyncio.TimeoutError:
        raise Timeout(f"{what} within {timeout_s:g} s") from None


class ChainTransport:
    """``client.fl.hospital.Transport`` over JSON-RPC: a hospital's view of the FL contract."""

    def __init__(self, session: ChainSession, *, round_timeout_s: float = 120.0) -> None:
        self.session = session
        self.round_timeout_s = round_timeout_s
        self.last_submit_s = 0.0

    def get_model(self, model_id: str) -> ChainModel:
        from client.fl.hospital import ChainModel

        spec = self.session.spec(model_id)
        open_round = self.session.rounds(model_id)[-1]
        version = self.session.model_version(model_id, open_round.base_version)
        return ChainModel(spec, version, open_round.round, open_round.opened_height)

    def consent_verdicts(self, model_id: str, height: int, patients: list[bytes]) -> list[Verdict]:
        """``client.fl.consent.CheckConsent`` over ``consent_check``."""
        params = CheckParams(model_id=model_id, height=height, patients=patients)
        return self.session.run(lambda c: c.query(CONSENT_CHECK, params))

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        info = self.session.submit_commit("fl.submit_update", payload)
        self.last_submit_s = time.perf_counter() - t0
        return {"hash": info.hash.hex(), "height": info.receipt.height, **info.receipt.result}

    def wait_round(self, model_id: str, round: int) -> RoundRecord:
        async def closed() -> RoundRecord | None:
            for record in await self.session.client.fl_rounds(model_id):
                if record.round == round and record.status != "open":
                    return record
            return None

        record = self.session.run(lambda c: _wait_until(c, closed, self.round_timeout_s,
                                                        f"{model_id} round {round} did not close"))
        self.session.seen_height = max(self.session.seen_height, record.closed_height or 0)
        return record
