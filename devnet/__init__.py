"""Developers' tools, never run in production: local testnets of real validator processes,
the fault-injecting TCP proxy, the default model catalog and ``fbci demo``."""
