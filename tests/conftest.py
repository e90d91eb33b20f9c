"""Suite-wide hooks: ``async def`` tests run in a fresh event loop, without a plugin.

Each coroutine test runs through ``asyncio.run`` (the job pytest-asyncio
would do) under a hard timeout, so a hung test fails instead of stalling CI.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

ASYNC_TEST_TIMEOUT_S = 120


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), ASYNC_TEST_TIMEOUT_S))
    return True
