"""The genesis document (schema, consistency rules, hash) and the creation of chains and homes.

Pure except for the files it is asked to write; imports only ``core``,
pydantic and the standard library. See ``genesis/README.md`` for the
one-machine and the production (keys never move) ways to start a chain.
"""
