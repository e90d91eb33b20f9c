"""Where the dashboard's chain data comes from: one interface, :class:`ChainSource`, and its RPC reader.

Every page reads the chain through these methods only. :class:`RpcSource`
asks one validator over JSON-RPC, signing private reads with the dashboard's
key; the Audit page's trail goes through :meth:`ChainSource.audit_session`, a
blocking session for ``client/audit.py`` (the code of ``fbci audit``).
:class:`VerifiedSource` has the same methods and checks the provable reads with
a light client (the default when the home holds a genesis file); the pages
never know which one they read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import aiohttp

from core.api import AccountInfo, BlockInfo, NodeStatus, NoParams, TxCommitResult, TxInfo
from core.tx import Transaction
from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.queries import FL_MODEL_GET, FL_MODELS, FL_ROUNDS, ModelGetParams, RegisteredModel, RoundsParams
from genesis.schema import ValidatorInfo
from ids.queries import ALERTS_QUERY, AlertPage, AlertsQueryParams
from core.crypto import PrivateKey
from consent.contract import TaintedRound
from consent.queries import CONSENT_PROVENANCE, ProvenanceParams
from client.light import LightClient
from client.rpc import RpcClient
from client.session import ChainSession


class ChainSource(Protocol):
    """The reads (and the one write, a signed transaction) the dashboard needs from a validator."""

    url: str

    async def status(self) -> NodeStatus: ...

    async def block(self, height: int | None = None) -> BlockInfo: ...

    async def tx(self, tx_hash: bytes) -> TxInfo: ...

    async def validators(self) -> list[ValidatorInfo]: ...

    async def account(self, public_key: bytes) -> AccountInfo: ...

    async def alerts(self, **filters: Any) -> AlertPage: ...

    async def models(self) -> list[RegisteredModel]: ...

    async def rounds(self, model_id: str) -> list[RoundRecord]: ...

    async def model_version(self, model_id: str, version: int | None = None) -> ModelVersion: ...

    async def consent_provenance(self, model_id: str) -> list[TaintedRound]:
        """Rounds of ``model_id`` that used patients who later withdrew consent (a private read)."""
        ...

    def audit_session(self) -> ChainSession:
        """A blocking session on this validator for ``client/audit.py`` (audit reads are signed, for auditors),
        made and used inside one worker thread."""
        ...

    async def metrics_text(self) -> str:
        """The validator's Prometheus exposition (``GET /metrics``): view changes, peers, evidence."""
        ...

    async def submit_commit(self, tx: Transaction, timeout_s: float) -> TxCommitResult: ...

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...

    async def close(self) -> None: ...


class RpcSource:
    """:class:`ChainSource` over one validator's plain JSON-RPC (:class:`client.rpc.RpcClient`)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, reader: PrivateKey | None = None) -> None:
        """``reader`` signs every read, which private methods (genesis ``read_policy``) require."""
        self.url = url.rstrip("/")
        self.reader = reader
        self._timeout_s = timeout_s
        self.client = RpcClient(url, timeout_s=timeout_s, reader=reader)
        self._metrics_url = self.client.rpc_url.removesuffix("/rpc") + "/metrics"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def status(self) -> NodeStatus:
        return await self.client.status()

    async def block(self, height: int | None = None) -> BlockInfo:
        return await self.client.get_block(height)

    async def tx(self, tx_hash: bytes) -> TxInfo:
        return await self.client.get_tx(tx_hash)

    async def validators(self) -> list[ValidatorInfo]:
        return await self.client.validators()

    async def account(self, public_key: bytes) -> AccountInfo:
        return await self.client.account_get(public_key)

    async def alerts(self, **filters: Any) -> AlertPage:
        return await self.client.alerts_query(**filters)

    async def models(self) -> list[RegisteredModel]:
        return await self.client.fl_models()

    async def rounds(self, model_id: str) -> list[RoundRecord]:
        return await self.client.fl_rounds(model_id)

    async def model_version(self, model_id: str, version: int | None = None) -> ModelVersion:
        return await self.client.fl_model_get(model_id, version)

    async def consent_provenance(self, model_id: str) -> list[TaintedRound]:
        return await self.client.query(CONSENT_PROVENANCE, ProvenanceParams(model_id=model_id))

    def audit_session(self) -> ChainSession:
        return ChainSession(self.url, self.reader, timeout_s=self._timeout_s, verify=False)

    async def metrics_text(self) -> str:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        async with self._http.get(self._metrics_url) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=f"GET {self._metrics_url}")
            return await resp.text()

    async def submit_commit(self, tx: Transaction, timeout_s: float) -> TxCommitResult:
        return await self.client.submit_tx_commit(tx, timeout_s)

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        return self.client.subscribe(topic)

    async def close(self) -> None:
        await self.client.close()
        if self._http is not None:
            await self._http.close()


class VerifiedSource:
    """:class:`ChainSource` whose provable reads (models, rounds, model versions, alerts) come through a
    :class:`client.light.LightClient`, checked against commit certificates of each height's validators
    (genesis's, followed through certified changes), so a validator that forges them is refused (and the
    next one asked); every other read, the acknowledgement
    and the subscriptions go through ``rest`` (status, blocks, metrics and the audit trail have no state proof).
    """

    def __init__(self, rest: ChainSource, light: LightClient) -> None:
        self.rest = rest
        self.light = light
        self.url = rest.url

    async def models(self) -> list[RegisteredModel]:
        return await self.light.query(FL_MODELS, NoParams())

    async def rounds(self, model_id: str) -> list[RoundRecord]:
        return await self.light.query(FL_ROUNDS, RoundsParams(model_id=model_id))

    async def model_version(self, model_id: str, version: int | None = None) -> ModelVersion:
        return await self.light.query(FL_MODEL_GET, ModelGetParams(model_id=model_id, version=version))

    async def alerts(self, **filters: Any) -> AlertPage:
        return await self.light.query(ALERTS_QUERY, AlertsQueryParams(**filters))

    async def status(self) -> NodeStatus:
        return await self.rest.status()

    async def block(self, height: int | None = None) -> BlockInfo:
        return await self.rest.block(height)

    async def tx(self, tx_hash: bytes) -> TxInfo:
        return await self.rest.tx(tx_hash)

    async def validators(self) -> list[ValidatorInfo]:
        return await self.rest.validators()

    async def account(self, public_key: bytes) -> AccountInfo:
        return await self.rest.account(public_key)

    async def consent_provenance(self, model_id: str) -> list[TaintedRound]:
        return await self.rest.consent_provenance(model_id)

    def audit_session(self) -> ChainSession:
        return self.rest.audit_session()

    async def metrics_text(self) -> str:
        return await self.rest.metrics_text()

    async def submit_commit(self, tx: Transaction, timeout_s: float) -> TxCommitResult:
        return await self.rest.submit_commit(tx, timeout_s)

    def subscribe(self, topic: str) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        return self.rest.subscribe(topic)

    async def close(self) -> None:
        """Closes ``rest``; the light client's endpoints belong to the sources they were taken from."""
        await self.rest.close()
