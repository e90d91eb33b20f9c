"""The light client follows validator-set changes through next_validators_hash, with no I/O: a chain built
in process adds a validator; headers of the new set are refused until the change is accepted on the word
of the certified header before it, and a served set that header does not name is refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from client.light_verify import ChainValidators, HeaderVerifier, accept_change
from core.api import NoParams
from core.block import Block
from core.errors import HeaderUnverified, ValidatorSetUnknown
from core.validators import ScheduledSet, validator_sets
from tests.governance.test_validator_set import CHAIN, add_params, commit, decide, entry, open_chain


def test_headers_of_a_new_set_verify_only_after_the_change_is_followed(tmp_path: Path) -> None:
    ledger = open_chain(tmp_path / "chain")
    decide(ledger, "validator.add", add_params(4))
    for _ in range(3):
        commit(ledger)
    app = ledger.app
    schedule = validator_sets(app.state, NoParams())
    genesis, change = schedule
    assert genesis.start == 1 and change.start == app.height - 1

    def header(height: int) -> tuple[Block, bytes]:
        stored = app.stored_block(height)
        return Block.decode(stored.raw, max_size=1 << 20), stored.certificate

    provider = ChainValidators(genesis.validators)
    headers = HeaderVerifier(CHAIN, provider)
    before, before_cert = header(change.start - 1)
    after, after_cert = header(change.start)
    headers.verify(before.header, before_cert)
    with pytest.raises(ValidatorSetUnknown, match=f"height {change.start} names a validator set"):
        headers.verify(after.header, after_cert)

    forged = ScheduledSet(change.start, replace(change.validators, validators=(*genesis.validators.validators,
                                                                                 entry(5))))
    with pytest.raises(HeaderUnverified, match="names another next validator set"):
        accept_change(provider, headers, forged, before.header, before_cert)
    with pytest.raises(HeaderUnverified, match="on the header of height"):
        accept_change(provider, headers, change, after.header, after_cert)
    accept_change(provider, headers, change, before.header, before_cert)
    headers.verify(after.header, after_cert)
    assert provider.validators_at(change.start) == change.validators.keys
    ledger.app.database.close()
