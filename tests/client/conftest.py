"""The client tests talk to the real RPC server over a fake node: the same fixtures as tests/node."""

from tests.node.conftest import client_key, fake_node, make_tx, serve

__all__ = ["client_key", "fake_node", "make_tx", "serve"]
