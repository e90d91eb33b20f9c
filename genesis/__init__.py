"""The genesis document (schema, consistency rules, hash) and the creation of chains and homes.

Pure except for the files it is asked to write; imports only ``core``,
pydantic and the standard library. ``genesis/README.md`` documents every
chain parameter and the shape of the application state.
"""
