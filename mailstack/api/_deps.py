"""What routes declare instead of parsing by hand: the runtime, a JSON body, typed and bounded IDs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool

from mailstack.runtime import Runtime

from ._errors import MALFORMED_JSON, ApiError

__all__ = [
    "MAX_ID",
    "MAX_JSON_DEPTH",
    "EmailPath",
    "JsonBody",
    "JsonDep",
    "RuntimeDep",
    "get_runtime",
    "id_path",
    "load_json",
]

MAX_ID = 2**63 - 1  # row ids are signed 64-bit integers on both backends
MAX_JSON_DEPTH = 64  # no request of this API nests deeper; far below the parser's recursion limit
_MALFORMED = "Malformed JSON, please review the syntax and properties types."


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# An address in the path: what is not an address names nothing here (404), as an unknown one does.
EmailPath = Annotated[str, Path(min_length=1, max_length=320, description="An email address")]


def id_path(description: str) -> Any:
    """A positive row id in the path: larger than any row id is a 400, not an overflow in the database."""
    return Path(ge=1, le=MAX_ID, description=description)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    # An explicit stack: the check itself must not recurse once per level.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def load_json(raw: bytes) -> Any:
    """Strict JSON (no NaN or Infinity, as Mailjet's parser) nested at most :data:`MAX_JSON_DEPTH` deep;
    anything else is Mailjet's 400 ``mj-0002``."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, f"{_MALFORMED} (nested too deeply)", code=MALFORMED_JSON) from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, _MALFORMED, code=MALFORMED_JSON) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise ApiError(400, f"{_MALFORMED} (nested deeper than {MAX_JSON_DEPTH} levels)", code=MALFORMED_JSON)
    return value


@dataclass(frozen=True, slots=True)
class JsonBody:
    raw: bytes
    value: Any


async def json_body(request: Request) -> JsonBody:
    """The request's body (bounded by the body-limit middleware), parsed off the event loop."""
    raw = await request.body()
    return JsonBody(raw, await run_in_threadpool(load_json, raw))


JsonDep = Annotated[JsonBody, Depends(json_body)]
