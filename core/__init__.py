"""The bottom layer every fbci package may import, and which imports none of them.

It owns what must be identical everywhere a byte is hashed or signed: the
canonical msgpack codec, SHA-256 and Merkle roots, Ed25519 identity with
domain-separated signatures, the error hierarchy with stable codes, and the
narrow state interface that on-chain contracts run against, and the request and
response types a validator and its clients share (``core.api``, ``core.wire``).
"""
