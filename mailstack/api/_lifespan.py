"""Background services started with the application and stopped after its last request.

uvicorn runs the lifespan shutdown once in-flight requests are done, which is exactly when the tracking
recorder must write what it still holds: hooking into the lifespan makes SIGTERM lose nothing, and tests
driving the app in-process get the same behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

__all__ = ["on_lifespan"]


def on_lifespan(app: FastAPI, start: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run ``start`` when the app starts and ``stop`` when it stops (in reverse order of registration)."""
    previous: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with previous(application) as state:
            await run_in_threadpool(start)
            try:
                yield state
            finally:
                await run_in_threadpool(stop)

    app.router.lifespan_context = lifespan
