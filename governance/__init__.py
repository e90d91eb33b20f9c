"""Consortium decisions by quorum: proposals, member approvals, expiry, and the governance queries.

A pure leaf: it imports only ``core/``. What a decision *does* (register an
account, add a model, rotate a key) is not known here: the node passes in an
:class:`governance.contract.Action` per action name, so this package holds only
the rule "an action runs once a genesis-declared threshold of distinct member
admin keys approved it, before its expiry height".
"""
