"""Federated learning on chain, and only what runs on chain: model specs, the round contract,
fixed-point aggregation rules, genesis's initial weights, and the FL queries.

Deterministic numpy and pydantic; no torch, no scikit-learn. The hospital's
side (data, torch training, the round client, the in-process simulation)
lives in ``client/fl/``.
"""
