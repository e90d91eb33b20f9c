"""The clinicians', operators' and auditors' web dashboard: a client of one validator's JSON-RPC and websocket.

It runs beside a validator, never inside it (``fbci dashboard``): chain data
comes through :mod:`client.dashboard.source` (one small interface, so signed
reads or a light client replace the plain RPC reader without touching the
pages), patients' vitals from the hospital's own feed (:mod:`client.dashboard.ward`),
scored with the chain's deterioration model and never sent anywhere.
"""
