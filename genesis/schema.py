"""The genesis document: its schema, the rules that make it consistent, and its hash.

Every validator of a chain starts from the same genesis document and proves
it to its peers by its hash: SHA-256 of the canonical encoding (``core.codec``)
of the document's JSON form. Two files that differ only in whitespace or key
order therefore have the same hash, and any difference in content does not.

``app_state`` is opaque here: it holds the initial FL model declarations
(``app_state["models"]``), which the node checks with ``fl_contracts``. This
package only requires it to be JSON the canonical codec can hash (no floats).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from core import codec
from core.crypto import HybridPublicKey, KeyType, PublicKey, VerifyingKey
from core.errors import InvalidGenesis, InvalidInput
from core.hashing import sha256
from core.validators import Validator, ValidatorSet
from genesis.types import STRICT, ChainId, DialAddress, MlDsaPublicKeyHex, Name, PublicKeyHex, Roles
from genesis.validation import (
    FieldError,
    check_canonical_json,
    dump_json,
    parse_json,
    read_json_file,
    validate_model,
    write_file_atomic,
)

MAX_PARAM = 2**31 - 1
MAX_TIME_MS = 2**63 - 1

Positive = Annotated[int, Field(gt=0, le=MAX_PARAM)]
NonNegative = Annotated[int, Field(ge=0, le=MAX_PARAM)]


class ChainParams(BaseModel):
    """Limits and timings every validator must agree on, so they live in genesis rather than in configs."""

    model_config = STRICT

    max_tx_bytes: Positive = 1024 * 1024
    """Largest encoded transaction; a quantized model delta must fit."""
    max_block_bytes: Positive = 8 * 1024 * 1024
    """Largest encoded block (transactions included)."""
    max_block_txs: Positive = 2000
    """Most transactions in one block."""
    block_interval_ms: Positive = 1000
    """Heartbeat: with nothing to commit, a proposer still proposes an empty block this often."""
    propose_delay_ms: NonNegative = 20
    """Batching window: how long a proposer waits after the first pending transaction."""
    max_clock_drift_ms: Positive = 5000
    """How far a proposed block's time may run ahead of a validator's own clock."""
    tick_ms: Positive = 100
    """Length of one consensus timer tick."""
    base_timeout_ticks: Positive = 20
    """Ticks a replica waits for progress in a view before voting to change it (doubles per view)."""
    mempool_max_txs: Positive = 10_000
    """Most pending transactions a validator holds."""
    mempool_max_bytes: Positive = 128 * 1024 * 1024
    """Most pending transaction bytes a validator holds."""
    rpc_requests_per_second: Positive = 200
    """Sustained JSON-RPC requests per client address."""
    rpc_burst: Positive = 400
    """Requests a client may send at once before the rate limit applies."""
    member_block_bytes: Positive = 2 * 1024 * 1024
    """Most transaction bytes one sender may have in one block, so no member can fill the chain alone."""
    member_window_bytes: Positive = 64 * 1024 * 1024
    """Most transaction bytes one sender may have committed within one quota window."""
    quota_window_blocks: Positive = 100
    """Length of a quota window in blocks; windows are heights [k * n, (k + 1) * n)."""
    snapshot_interval: NonNegative = 1000
    """State-sync snapshots: every validator keeps the state after each of the last two multiples of this
    height servable to joining validators (0: none kept, joiners replay every block)."""

    @model_validator(mode="after")
    def _consistent(self) -> ChainParams:
        if self.max_tx_bytes > self.max_block_bytes:
            raise FieldError(("max_tx_bytes",), f"must be <= max_block_bytes ({self.max_block_bytes})")
        if self.max_tx_bytes > self.mempool_max_bytes:
            raise FieldError(("max_tx_bytes",), f"must be <= mempool_max_bytes ({self.mempool_max_bytes})")
        if self.max_tx_bytes > self.member_block_bytes:
            raise FieldError(("max_tx_bytes",), f"must be <= member_block_bytes ({self.member_block_bytes})")
        if self.member_block_bytes > self.member_window_bytes:
            raise FieldError(("member_block_bytes",), f"must be <= member_window_bytes ({self.member_window_bytes})")
        if self.propose_delay_ms > self.block_interval_ms:
            raise FieldError(("propose_delay_ms",), f"must be <= block_interval_ms ({self.block_interval_ms})")
        if self.base_timeout_ticks * self.tick_ms <= self.propose_delay_ms:
            raise FieldError(("base_timeout_ticks",), (
                f"base_timeout_ticks * tick_ms ({self.base_timeout_ticks * self.tick_ms} ms) must exceed "
                f"propose_delay_ms ({self.propose_delay_ms}), or every view times out before its proposal"))
        return self


class ValidatorInfo(BaseModel):
    model_config = STRICT

    name: Name
    public_key: PublicKeyHex
    p2p_address: DialAddress
    """Where the other validators connect to this one."""
    key_type: Literal["ed25519", "ed25519+ml-dsa-65"] = "ed25519"
    """``ed25519+ml-dsa-65``: the validator's votes, certificates and peer handshakes carry hybrid signatures,
    valid only when both the Ed25519 half (``public_key``, still its identity) and the ML-DSA-65 half verify."""
    ml_dsa_public_key: MlDsaPublicKeyHex | None = None
    """The ML-DSA-65 half of a hybrid key (hex); absent for an Ed25519 validator."""

    @model_validator(mode="after")
    def _key_halves(self) -> ValidatorInfo:
        if (self.key_type == KeyType.HYBRID.value) != (self.ml_dsa_public_key is not None):
            raise FieldError(("ml_dsa_public_key",), "is required for a hybrid key and absent otherwise")
        try:
            self.verifying_key()
        except InvalidInput as exc:
            raise FieldError(("ml_dsa_public_key",), exc.message) from None
        return self

    @model_serializer(mode="wrap")
    def _ed25519_as_before(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An Ed25519 validator is written without the key-type fields, so existing genesis files keep
        their hash."""
        data: dict[str, Any] = handler(self)
        if self.key_type == KeyType.ED25519.value:
            data.pop("key_type", None)
            data.pop("ml_dsa_public_key", None)
        return data

    def verifying_key(self) -> VerifyingKey:
        """The key its signatures are checked with, of the type genesis declares."""
        raw = bytes.fromhex(self.public_key)
        if self.ml_dsa_public_key is None:
            return PublicKey(raw)
        return HybridPublicKey(raw, bytes.fromhex(self.ml_dsa_public_key))


class Account(BaseModel):
    """A key allowed to submit transactions, and the roles that decide which kinds."""

    model_config = STRICT

    name: Name
    public_key: PublicKeyHex
    roles: Roles


def _hashable_json(value: dict[str, Any]) -> dict[str, Any]:
    check_canonical_json(value)
    return value


class GenesisDoc(BaseModel):
    model_config = STRICT

    chain_id: ChainId
    genesis_time_ms: Annotated[int, Field(ge=0, le=MAX_TIME_MS)]
    """Unix time of the chain's start; block 1's time must not precede it."""
    validators: Annotated[list[ValidatorInfo], Field(min_length=1)]
    """The validator set, in the order consensus uses (proposer rotation)."""
    params: ChainParams = Field(default_factory=ChainParams)
    accounts: list[Account]
    app_state: Annotated[dict[str, Any], AfterValidator(_hashable_json)] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> GenesisDoc:
        _check_unique(self.validators, "validators", ("name", "public_key", "p2p_address"))
        _check_unique(self.accounts, "accounts", ("name", "public_key"))
        accounts = {a.public_key: a for a in self.accounts}
        for i, v in enumerate(self.validators):
            account = accounts.get(v.public_key)
            if account is None or "validator" not in account.roles:
                raise FieldError(("validators", i, "public_key"),
                                 "every validator needs an account with this key and role 'validator'")
            if account.name != v.name:
                raise FieldError(("validators", i, "name"),
                                 f"is {v.name!r} but the account with this key is named {account.name!r}")
        validator_keys = {v.public_key for v in self.validators}
        for j, a in enumerate(self.accounts):
            if "validator" in a.roles and a.public_key not in validator_keys:
                raise FieldError(("accounts", j, "roles"),
                                 f"account {a.name!r} has role 'validator' but is not in the validator set")
        if not any("admin" in a.roles for a in self.accounts):
            raise FieldError(("accounts",), "at least one account needs role 'admin' (to manage the others)")
        return self

    def validator_set(self) -> ValidatorSet:
        """Genesis's validators as the chain's first validator set (``core.validators``), in their order."""
        return ValidatorSet(tuple(Validator(bytes.fromhex(v.public_key), v.name, v.p2p_address, v.key_type,
                                            bytes.fromhex(v.ml_dsa_public_key or "")) for v in self.validators))

    def validator_keys(self) -> dict[bytes, VerifyingKey]:
        """Each validator's verifying key by its 32-byte identity: the allow-list of peer links, and the
        key types consensus checks votes and certificates by."""
        return {bytes.fromhex(v.public_key): v.verifying_key() for v in self.validators}

    def hash(self) -> bytes:
        """SHA-256 of the canonical encoding: what validators compare to know they share a genesis."""
        return sha256(codec.encode(self.model_dump(mode="json")))

    def to_json(self) -> str:
        return dump_json(self.model_dump(mode="json"))


class GenesisWithHash(BaseModel):
    """The ``genesis`` JSON-RPC answer: the document and the hash validators compare it by."""

    model_config = STRICT

    genesis: GenesisDoc
    hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _check_unique(items: list[BaseModel], field: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            value = getattr(item, key)
            if value in seen:
                raise FieldError((field, i, key), f"{value!r} is already used by {field}[{seen[value]}]")
            seen[value] = i


def genesis_from_obj(obj: Any, *, source: str = "genesis.json") -> GenesisDoc:
    return validate_model(GenesisDoc, obj, source=source, error=InvalidGenesis)


def parse_genesis(text: str | bytes, *, source: str = "genesis.json") -> GenesisDoc:
    return genesis_from_obj(parse_json(text, source=source, error=InvalidGenesis), source=source)


def load_genesis(path: Path) -> GenesisDoc:
    """Read and validate a genesis file; any problem is an :class:`InvalidGenesis` naming the field."""
    return genesis_from_obj(read_json_file(path, error=InvalidGenesis), source=str(path))


def write_genesis(doc: GenesisDoc, path: Path) -> None:
    write_file_atomic(path, doc.to_json())
