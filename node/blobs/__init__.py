"""Content-addressed blobs on a validator: large model updates travel beside the chain, not in it.

``store`` keeps them on disk, ``endpoint`` serves the ``blob_*`` JSON-RPC
methods, ``messages`` and ``replication`` move them between validators and
attest them on chain, ``pruning`` decides what to delete, and ``service``
puts the pieces together for the runtime. The shared types and rules are in
``core.blobs``.
"""
