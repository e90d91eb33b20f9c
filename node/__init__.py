"""The validator process, and nothing else: stores, the application behind its one boundary
(``node.application``), the mempool, the consensus driver, block sync, the peer transport and
the JSON-RPC server. Nothing here imports ``client/``, ``cli/`` or ``devnet/``, and a running
validator never loads torch or scikit-learn."""
