"""Background services started with the application and stopped after its last request.

uvicorn runs the lifespan shutdown once in-flight requests are done, which is exactly when the tracking
recorder must write what it still holds: hooking into the lifespan makes SIGTERM lose nothing, and tests
driving the app in-process get the same behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

__all__ = ["on_lifespan", "run_in_background"]


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


def run_in_background(
    app: FastAPI,
    run: Callable[[threading.Event], None],
    *,
    name: str,
    join_seconds: float = 30.0,
    prepare: Callable[[], None] | None = None,
) -> None:
    """Run ``run(stop)`` in a daemon thread for the app's lifetime: ``prepare`` (if any) first, then the
    thread; at shutdown ``stop`` is set and the thread gets ``join_seconds`` to finish its batch."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start() -> None:
        if prepare is not None:
            prepare()
        stop.clear()
        thread = threading.Thread(target=run, args=(stop,), name=name, daemon=True)
        thread.start()
        threads.append(thread)

    def finish() -> None:
        stop.set()
        for thread in threads:
            thread.join(join_seconds)
        threads.clear()

    on_lifespan(app, start, finish)
