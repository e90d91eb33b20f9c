"""Federated learning on chain: model specs, the round contract, fixed-point aggregation rules.

The validator path (``spec``, ``fixedpoint``, ``rules``, ``contract``,
``memstate``, ``metrics``, ``data``) is pure numpy and pydantic. The
hospital side (``training``, ``client``, ``simulation``) adds PyTorch and
Opacus; importing this package imports neither.
"""
