"""Shared fixtures: a small labelled flow sample from every hospital (generated once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from ids.flows import HOSPITAL_PROFILES, generate_flows
from ids.record import FlowRecord


@pytest.fixture(scope="session")
def flows() -> list[FlowRecord]:
    out: list[FlowRecord] = []
    for i, h in enumerate(HOSPITAL_PROFILES):
        out += generate_flows(h, 1500, np.random.default_rng(i))
    return out
