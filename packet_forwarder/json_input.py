"""JSON from outsiders (MQTT commands, the inject and status sockets), parsed with bounds.

``json.loads`` recurses once per nesting level, so a few kilobytes of ``[[[[...`` give
a ``RecursionError`` instead of a parse error, and a document just under the
interpreter's limit still breaks whoever walks it next (``repr``, a log renderer).
:func:`loads_bounded` turns both into one :class:`JsonInputError` with a short reason,
so every caller can refuse the input with one line.
"""

from __future__ import annotations

import json
from typing import Any, Final

MAX_DEPTH: Final = 32
"""No message of this gateway nests deeper than a handful of levels."""


class JsonInputError(ValueError):
    """The input is not acceptable JSON; ``str()`` is a one-line reason without the input."""


def loads_bounded(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` (UTF-8 when bytes); raises :class:`JsonInputError` for anything bad."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise JsonInputError("not UTF-8 text") from None
    except ValueError as exc:
        raise JsonInputError(f"not JSON ({str(exc).splitlines()[0][:80]})") from None
    if depth_exceeds(value, max_depth):
        raise JsonInputError(f"JSON nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether containers nest deeper than ``max_depth`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False
