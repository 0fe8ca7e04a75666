"""Import this module before paho-mqtt: paho's ``urllib.request`` then loads only if used.

paho-mqtt 2.x imports ``urllib.request`` at module level, and with it ``http.client``,
most of the ``email`` package and ``tempfile``: close to 1 MB of resident memory in a
daemon that never makes an HTTP request. paho touches it in one place,
``Client._get_proxy``, which returns before reaching it unless PySocks (``socks``) is
installed (``paho/mqtt/client.py`` in paho-mqtt 2.2.0).

Importing this module puts a stand-in ``urllib.request`` into ``sys.modules``: a module
with the real one's spec and a module ``__getattr__`` (PEP 562). paho's ``import
urllib.request`` finds it and binds the ``urllib`` package, no code runs. The first
attribute anyone asks of it imports the real module in its place (which also sets
``urllib.request`` on the package, as any import does) and answers from it, so whoever
does use it, paho with PySocks installed or anything else in the process, gets the
genuine module. Concurrent first uses are serialised by a lock, so it is imported once.

Not ``importlib.util.LazyLoader``: its lazy module loads on any attribute access, and
the ``import`` statement itself reads ``__spec__`` of a module found in ``sys.modules``,
so paho's import would load it at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

__all__ = ["NAME", "defer_urllib_request"]

NAME = "urllib.request"


def _stand_in(spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
    stub = types.ModuleType(NAME, "Stand-in: the real urllib.request is imported on first use.")
    stub.__spec__ = spec
    lock = threading.RLock()  # re-entrant: the real module's own imports may ask again

    def load_and_get(attr: str) -> object:
        with lock:
            if sys.modules.get(NAME) is stub:
                del sys.modules[NAME]
            real = importlib.import_module(NAME)
        return getattr(real, attr)

    stub.__getattr__ = load_and_get  # type: ignore[method-assign]
    return stub


def defer_urllib_request() -> None:
    """Put the stand-in into ``sys.modules``, unless ``urllib.request`` is imported already."""
    if NAME in sys.modules:
        return
    spec = importlib.util.find_spec(NAME)  # imports the (empty) package, runs no other code
    if spec is None:  # pragma: no cover - it is part of the standard library
        return
    stub = _stand_in(spec)
    sys.modules[NAME] = stub
    package, _, child = NAME.rpartition(".")
    setattr(sys.modules[package], child, stub)  # as an import sets it on the package


defer_urllib_request()
