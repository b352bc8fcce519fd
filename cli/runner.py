"""Running a command's coroutine: on uvloop where it is installed (a field dependency), else asyncio."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run(coro_factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_factory())
    return uvloop.run(coro_factory())
