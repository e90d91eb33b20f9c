"""Everything that talks to a validator from outside, over JSON-RPC and websocket.

A hospital's training job, an IDS gateway, a clinician's prediction and the
operator's status check run this code; a validator never imports it. It
reads the shared request and response types from ``core/`` and the leaves'
schemas (``fl_contracts/``, ``ids/``, ``genesis/``), never ``node/``. Torch
and scikit-learn are imported only under ``client/fl/``.
"""
