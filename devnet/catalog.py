"""The models a local testnet's genesis declares, so every demo and test trains the same ones.

Each is a torch-``nn.Sequential``-layout model (see ``fl_contracts.spec``)
whose input width comes from the package that owns its features:

- ``breast_cancer``: logistic regression on scikit-learn's bundled breast
  cancer data (30 features), aggregated with centered clipping behind the
  adaptive norm-clipping pre-step: the rule with the smallest worst-case
  loss on breast cancer in the attack suite (``bench/bench_attacks.py``,
  README "Robust aggregation against persistent attackers");
  ``breast_cancer_fedavg`` is the same model under plain FedAvg, so the
  ledger itself shows what a poisoning hospital does to each rule;
  ``breast_cancer_secure`` is FedAvg again with secure aggregation, so no
  validator sees a hospital's update (``fl_contracts.secure_round``).
- ``iomt_ids`` and ``deterioration`` stay on FedAvg: the attack suite does
  not cover their data yet, so it gives no ground to pick another rule.
- ``iomt_ids``: the gateway's flow classifier, an MLP over ``ids.features``;
  its input schema is the layout the declared IoMT device types give
  (``app_state.device_types``, written out: ``ids.devices``), so a catalog
  with a ventilator declares a model one input wider.
- ``deterioration``: logistic regression over ``ids.deterioration`` window features.

Consent (``app_state.consent.required_for``) is required for the two models
trained on patients' records one row per patient, ``breast_cancer`` and
``breast_cancer_fedavg``: each update lists the consented patients' pseudonyms
and weighs their number. ``breast_cancer_secure`` cannot (a masked input lists
no patients, so genesis refuses a secure model that requires consent), nor do
``iomt_ids`` (device traffic, no patient) or ``deterioration`` (its training
rows are 4-hour windows, many per patient, which the consent list does not
yet group by patient).

The wide models (:func:`wide_mlp`) are not in the default catalog: a model
of 10 or 50 million parameters is too large for a transaction, so it
declares ``blobs`` (``fl_contracts.blob_updates``), and costs every
validator its weights in RAM and on disk. The blob testnet test and
``bench/bench_blobs.py`` declare them in their own genesis
(:func:`wide_app_state`); they train on ``client.fl.synthetic``.

A real consortium writes its own ``app_state.models`` into genesis; this is
only the one-machine default. ``read_policy`` is written out in full (every
read at its default: private for models, rounds, deltas, alerts, consent and
audit), so the genesis file shows which reads need a signature.
"""

from __future__ import annotations

from typing import Any

from client.fl.synthetic import CLASSES, FEATURES
from fl_contracts.spec import ModelSpec
from ids.devices import APP_STATE_KEY as DEVICE_TYPES_KEY, DEFAULT_DEVICES, DeviceCatalog
from ids.features import feature_names
from ids.flows import ATTACK_CLASSES
from ids.deterioration import N_WINDOW_FEATURES

BREAST_CANCER_FEATURES = 30
BREAST_CANCER_RULE = {"rule": "centered_clip", "rule_params": {"iters": 3, "tau_pct": 100, "adaptive_clip_pct": 150}}


def default_models(hospitals: int, round_length_blocks: int = 20,
                   devices: DeviceCatalog = DEFAULT_DEVICES) -> list[ModelSpec]:
    common: dict[str, Any] = {"round_length_blocks": round_length_blocks, "min_updates": min(2, hospitals),
                              "max_updates": hospitals}
    return [
        ModelSpec.for_sequential("breast_cancer", [BREAST_CANCER_FEATURES, 2], max_abs=8.0, max_norm=16.0,
                                 **BREAST_CANCER_RULE, **common),
        ModelSpec.for_sequential("breast_cancer_fedavg", [BREAST_CANCER_FEATURES, 2], rule="fedavg",
                                 max_abs=8.0, max_norm=16.0, **common),
        ModelSpec.model_validate({**ModelSpec.for_sequential(
            "breast_cancer_secure", [BREAST_CANCER_FEATURES, 2], rule="fedavg", max_abs=8.0, max_norm=16.0,
            **common).model_dump(), "secure": True}),
        ModelSpec.for_sequential("iomt_ids", [len(feature_names(devices)), 32, len(ATTACK_CLASSES)], rule="fedavg",
                                 max_abs=8.0, max_norm=32.0, input_features=feature_names(devices), **common),
        ModelSpec.for_sequential("deterioration", [N_WINDOW_FEATURES, 2], rule="fedavg",
                                 max_abs=8.0, max_norm=16.0, **common),
    ]


WIDE_MLPS: dict[str, tuple[int, ...]] = {
    "wide_mlp_1m": (FEATURES, 1024, 896, CLASSES),  # 986,754 parameters: 3.9 MB per update, two chunks
    "wide_mlp_10m": (FEATURES, 3200, 3072, CLASSES),  # 10,047,618 parameters: 40 MB per update
    "wide_mlp_50m": (FEATURES, 7104, 7040, CLASSES),  # 50,495,042 parameters: 202 MB per update
}
"""Two-hidden-layer MLPs on the synthetic task; 11 fractional bits keep 50M * max_abs**2 below 2**53. The
smallest is still four times what a transaction may carry, so it trains only through blobs too."""


def wide_mlp(model_id: str, hospitals: int, round_length_blocks: int = 40) -> ModelSpec:
    """A wide MLP that trains through blobs; ``round_length_blocks`` must leave time to push and replicate."""
    return ModelSpec.for_sequential(model_id, list(WIDE_MLPS[model_id]), frac_bits=11, rule="fedavg", max_abs=4.0,
                                    max_norm=64.0, min_updates=1, max_updates=hospitals,
                                    round_length_blocks=round_length_blocks, blobs=True)


def wide_app_state(hospitals: int, model_ids: tuple[str, ...] = ("wide_mlp_10m",), round_length_blocks: int = 40
                   ) -> dict[str, Any]:
    """A chain that trains only the wide models (no consent policy: their rows are synthetic)."""
    return with_read_policy({"models": [wide_mlp(m, hospitals, round_length_blocks).to_doc() for m in model_ids]})


def with_read_policy(app_state: dict[str, Any]) -> dict[str, Any]:
    """``app_state`` with ``read_policy`` written out: every read at its default unless ``app_state``
    names it, so whoever reads the genesis file sees which reads are private."""
    from node.app_reads import RPC_QUERIES
    from node.read_auth import default_read_policy

    named = app_state.get("read_policy", {})
    if not isinstance(named, dict):
        return app_state  # the node refuses it, naming the key (node.read_auth.read_policy)
    return {**app_state, "read_policy": {**default_read_policy(RPC_QUERIES), **named}}


CONSENT_REQUIRED = ("breast_cancer", "breast_cancer_fedavg")
"""The models whose updates must list consented patients on a default chain."""


def default_app_state(hospitals: int, devices: DeviceCatalog = DEFAULT_DEVICES) -> dict[str, Any]:
    """The one-machine default; ``devices``: the IoMT device types it declares (and ``iomt_ids`` reads)."""
    return with_read_policy({"models": [spec.to_doc() for spec in default_models(hospitals, devices=devices)],
                             DEVICE_TYPES_KEY: devices.to_doc(),
                             "consent": {"required_for": list(CONSENT_REQUIRED)}})
