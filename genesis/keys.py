"""Identities for the production path, where no private key ever leaves its machine.

Each participant runs ``fbci keys gen`` on its own machine: that writes the
private key (mode 0600) into its home and a :class:`PublicPart` to
``HOME/public.json``. Only public parts are exchanged; ``genesis.assemble``
builds the genesis document from them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, model_validator

from core.crypto import AnySigningKey, HybridPrivateKey, HybridPublicKey, PrivateKey, load_signing_key
from core.errors import InvalidInput
from genesis.home import HomePaths
from genesis.types import STRICT, DialAddress, MlDsaPublicKeyHex, Name, PublicKeyHex, Roles
from genesis.validation import FieldError, dump_json, read_json_file, validate_model, write_file_atomic


class PublicPart(BaseModel):
    """What one participant shares with the consortium: never a secret."""

    model_config = STRICT

    name: Name
    public_key: PublicKeyHex
    roles: Roles
    p2p_address: DialAddress | None = None
    """Where peers reach this validator; required for, and only for, role 'validator'."""
    rpc_address: DialAddress | None = None
    """Where clients reach this node's JSON-RPC server, if it runs one."""
    ml_dsa_public_key: MlDsaPublicKeyHex | None = None
    """The ML-DSA-65 half of a hybrid validator key (``fbci keys gen --hybrid``); absent for Ed25519."""

    @model_validator(mode="after")
    def _addresses_fit_roles(self) -> PublicPart:
        is_validator = "validator" in self.roles
        if is_validator and self.p2p_address is None:
            raise FieldError(("p2p_address",), "is required for role 'validator'")
        if not is_validator and self.p2p_address is not None:
            raise FieldError(("p2p_address",), "only a validator has a p2p address")
        if not is_validator and self.ml_dsa_public_key is not None:
            raise FieldError(("ml_dsa_public_key",), "only a validator key may be hybrid (transactions are Ed25519)")
        return self

    def to_json(self) -> str:
        return dump_json(self.model_dump(mode="json"))


def public_part_of(key: AnySigningKey, *, name: str, roles: list[str], p2p_address: str | None = None,
                   rpc_address: str | None = None, source: str = "public part") -> PublicPart:
    public = key.public_key
    obj = {"name": name, "public_key": public.raw.hex(), "roles": roles,
           "p2p_address": p2p_address, "rpc_address": rpc_address}
    if isinstance(public, HybridPublicKey):
        obj["ml_dsa_public_key"] = public.ml_dsa.hex()
    return validate_model(PublicPart, obj, source=source, error=InvalidInput)


def load_public_part(path: Path) -> PublicPart:
    return validate_model(PublicPart, read_json_file(path, error=InvalidInput), source=str(path), error=InvalidInput)


def generate_identity(home: Path, *, name: str, roles: list[str], p2p_address: str | None = None,
                      rpc_address: str | None = None, hybrid: bool = False) -> PublicPart:
    """Create the home's key and public.json; refuses to replace an existing key, which would lose it."""
    paths = HomePaths(home)
    for existing in (paths.node_key, paths.public):
        if existing.exists():
            raise InvalidInput(f"{existing} already exists; fbci never overwrites a key "
                               "(use another --home, or remove it yourself if it is truly unused)")
    key: AnySigningKey = HybridPrivateKey.generate() if hybrid else PrivateKey.generate()
    part = public_part_of(key, name=name, roles=roles, p2p_address=p2p_address, rpc_address=rpc_address,
                          source=str(paths.public))
    key.save(paths.node_key)
    write_file_atomic(paths.public, part.to_json())
    return part


def show_identity(home: Path) -> PublicPart:
    """The home's public part, after checking it belongs to the key actually stored there."""
    paths = HomePaths(home)
    key = load_signing_key(paths.node_key)
    part = load_public_part(paths.public)
    if part != public_part_of(key, name=part.name, roles=list(part.roles), p2p_address=part.p2p_address,
                              rpc_address=part.rpc_address):
        raise InvalidInput(f"{paths.public}: public_key does not match {paths.node_key}")
    return part
