"""A valid genesis document that each test may mutate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from genesis.create import assemble
from genesis.schema import GenesisDoc
from tests.genesis.samples import GENESIS_TIME_MS, sample_parts


@pytest.fixture
def doc() -> GenesisDoc:
    return assemble("fbci-test", sample_parts(), genesis_time_ms=GENESIS_TIME_MS,
                    app_state={"models": [{"id": "vitals", "dim": 16, "scale_bits": 16}]})


@pytest.fixture
def doc_json(doc: GenesisDoc) -> dict[str, Any]:
    """A fresh, mutable JSON form of ``doc``."""
    return json.loads(doc.to_json())
