"""Run one async test and fail it if it leaves a task behind (a leak ``stop()`` should have closed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

TEST_TIMEOUT_S = 60


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def checked() -> None:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await main()
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leftover, f"tasks still running after stop: {leftover}"

    asyncio.run(checked())
