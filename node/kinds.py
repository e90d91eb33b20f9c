"""Every transaction kind the chain executes, and what genesis writes before the first block.

This is the one place where the pure contracts from ``fl_contracts/`` and
``ids/`` meet the executor; adding a kind is one ``register`` line here plus
its contract. Roles say who may send what: admins manage membership (by quorum, ``gov.*``,
when genesis declares governance), admins, hospitals and gateways rotate their own keys,
hospitals train and issue their clinicians' and patient proxies' keys,
a patient's proxy or custodian hospital writes its consent, gateways and
validators post alerts, validators evidence, audit anchors and blob attestations. Clinicians and auditors send no
transactions: they only read (their read methods declare them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial, wraps

from consent import contract as consent
from consent.policy import consent_policy
from core.audit import ANCHOR_KIND
from core.blobs import ATTEST_KIND as BLOB_ATTEST_KIND
from core.errors import InvalidGenesis
from consensus import Verifier
from core.state import StateView
from fl_contracts import contract as fl
from fl_contracts import sampling, secure_round
from fl_contracts.blob_updates import ModelBlobs
from fl_contracts.initial import initial_weights
from fl_contracts.spec import ModelSpec
from genesis.schema import GenesisDoc
from ids import alerts
from ids.features import check_ids_model
from governance import contract as gov
from governance.config import governance_config
from governance.contract import Governance
from node import accounts, audit_anchor, blob_attest, evidence_tx, validator_set
from node.gov_actions import ACTIONS, single_admin
from fl_contracts.contract import RoundRecord
from node.execution import EndBlockHook, TxKindRegistry

ANY_MEMBER = ("admin", "validator", "hospital", "gateway")
ROTATING_ROLES = ("admin", "hospital", "gateway")
"""Who rotates its own key (``acl.rotate``): a validator's key is its consensus identity, and the read-only
keys (clinician, auditor) and patient proxies send no such transaction; theirs move by a governance ``rotate``."""
"""The consortium's own keys; the keys a hospital issues (clinician, patient proxy) and auditors are not."""


def _height_only(hook: Callable[[StateView, int], Sequence[RoundRecord]]) -> EndBlockHook:
    """An end-block hook that needs no block hash (only FL's sampled draws do). It keeps the wrapped hook's
    name, under which a failure of it is recorded on chain (``node.execution.hook_name``)."""
    return wraps(hook)(lambda state, height, _block_hash: hook(state, height))


def build_registry(chain_id: str, validators: tuple[bytes, ...], verifier: Verifier | None = None,
                   blobs: ModelBlobs | None = None) -> TxKindRegistry:
    """``blobs``: the node's blob store, where FL rounds of a blob model read updates and write versions."""
    registry = TxKindRegistry()
    for kind, handler in (("acl.register", accounts.register), ("acl.grant", accounts.grant),
                          ("acl.revoke", accounts.revoke)):
        registry.register(kind, ["admin"], single_admin(kind, handler))
    registry.register("acl.rotate", ROTATING_ROLES, accounts.rotate)
    registry.register("validator.rotate_key", ["validator"], validator_set.rotate_own_key)
    governance = Governance(ACTIONS)
    registry.register(gov.PROPOSE_KIND, ["admin"], governance.propose)
    registry.register(gov.APPROVE_KIND, ["admin"], governance.approve)
    registry.end_block_hooks.append(_height_only(governance.end_block))
    registry.register("acl.issue", ["hospital"], accounts.issue)
    registry.register("test.echo", ANY_MEMBER, accounts.echo)
    registry.register("fl.submit_update", ["hospital"], partial(fl.submit_update, consent=consent.ChainConsent()))
    registry.register(consent.SET_KIND, [consent.PROXY_ROLE, consent.HOSPITAL_ROLE], consent.set_consent)
    registry.register(consent.REVOKE_KIND, [consent.PROXY_ROLE, consent.HOSPITAL_ROLE], consent.revoke_consent)
    registry.end_block_hooks.append(wraps(fl.end_block)(partial(fl.end_block, blobs=blobs)))  # keeps its hook name
    for kind, handler in secure_round.HANDLERS:
        registry.register(kind, ["hospital"], handler)
    registry.end_block_hooks.append(_height_only(secure_round.end_block))
    registry.register(alerts.TX_KIND, [alerts.GATEWAY_ROLE, alerts.VALIDATOR_ROLE],
                      partial(alerts.submit_alert, convicted_by=evidence_tx.convicted_validator))
    registry.register(alerts.ACK_TX_KIND, alerts.ACK_ROLES, alerts.ack_alert)
    registry.register(evidence_tx.TX_KIND, ["validator"], evidence_tx.evidence_handler(chain_id, validators, verifier))
    registry.register(ANCHOR_KIND, ["validator"], audit_anchor.anchor)
    registry.register(BLOB_ATTEST_KIND, ["validator"], blob_attest.attest)
    return registry


def model_specs(doc: GenesisDoc) -> list[ModelSpec]:
    """The FL models genesis declares in ``app_state.models`` (validated by fl_contracts)."""
    return [ModelSpec.parse(m) for m in doc.app_state.get("models", [])]


def _check_draws(doc: GenesisDoc, specs: list[ModelSpec]) -> None:
    """A sampled model whose expected draw over genesis's hospitals is below its quorum would fail most rounds."""
    hospitals = sum(fl.HOSPITAL_ROLE in a.roles for a in doc.accounts)
    for spec in specs:
        rate = spec.sample_rate_ppm
        if rate is not None and hospitals and hospitals * rate < spec.min_updates * sampling.PPM:
            raise InvalidGenesis(
                f"app_state: model {spec.id}: sample_rate_ppm {rate} draws {hospitals * rate / sampling.PPM:.2f} of "
                f"genesis's {hospitals} hospitals per round on average, below its min_updates {spec.min_updates}: "
                "most rounds would fail; raise the rate or lower min_updates", data={"field": f"models.{spec.id}"})


def genesis_hooks(doc: GenesisDoc, blobs: ModelBlobs | None = None) -> list[Callable[[StateView], None]]:
    specs = model_specs(doc)
    policy = consent_policy(doc.app_state)
    unchecked = [s.id for s in specs if s.secure and ("*" in policy.required_for or s.id in policy.required_for)]
    if unchecked:  # a secure round's masked inputs list no patients, so the chain could not check consent
        raise InvalidGenesis(f"app_state: models {unchecked} are secure and require consent; a secure round cannot "
                             "check consent yet, so declare them without one of the two")
    _check_draws(doc, specs)
    check_ids_model(doc.app_state, specs)  # the declared IoMT device types fix the IDS model's input
    governed = governance_config(doc.app_state, {a.name: bytes.fromhex(a.public_key) for a in doc.accounts
                                                 if "admin" in a.roles})
    return [lambda state: fl.init_models(state, specs, {spec.id: initial_weights(spec) for spec in specs}, 0,
                                         blobs=blobs),
            lambda state: consent.init_policy(state, policy.required_for),
            lambda state: gov.init_governance(state, governed)]
