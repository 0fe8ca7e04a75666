"""paho's ``urllib.request`` stays unexecuted until used, and is the real module once used.

Each case runs in a fresh interpreter: the stand-in only matters before anything has
imported ``urllib.request`` for real, which the test process itself has long done.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env)
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_importing_the_mqtt_link_runs_no_http_or_email_code() -> None:
    got = _run("import json, sys\n"
               "import packet_forwarder.mqtt_link\n"
               "stub = sys.modules['urllib.request']\n"
               "print(json.dumps({'executed': 'urlopen' in vars(stub),\n"
               "                  'loaded': sorted(m for m in ('http.client', 'email.parser',\n"
               "                      'email.message', 'tempfile') if m in sys.modules)}))")
    assert got == {"executed": False, "loaded": []}


def test_first_use_imports_the_real_module_in_every_spelling() -> None:
    got = _run("import json, sys, types\n"
               "import packet_forwarder.lazy_urllib\n"
               "import urllib.request\n"
               "first = urllib.request.getproxies\n"  # through the package attribute
               "from urllib.request import Request\n"
               "real = sys.modules['urllib.request']\n"
               "print(json.dumps({'callable': callable(first),\n"
               "                  'request': Request('http://example.org/').host,\n"
               "                  'package_attr_is_real': urllib.request is real,\n"
               "                  'real_has_urlopen': 'urlopen' in vars(real)}))")
    assert got == {"callable": True, "request": "example.org", "package_attr_is_real": True,
                   "real_has_urlopen": True}


def test_paho_proxy_lookup_works_through_the_stand_in() -> None:
    """With PySocks present paho reads ``mqtt_proxy`` through ``urllib.request``."""
    code = ("import json, types\n"
            "import packet_forwarder.mqtt_link\n"
            "import paho.mqtt.client as mqtt\n"
            "from paho.mqtt.enums import CallbackAPIVersion\n"
            "socks = types.SimpleNamespace(HTTP=3, SOCKS4=1, SOCKS5=2,\n"
            "                              get_default_proxy=lambda: None)\n"
            "mqtt.socks = socks\n"  # as if PySocks were installed
            "client = mqtt.Client(CallbackAPIVersion.VERSION2)\n"
            "client._host = 'broker.example'\n"
            "print(json.dumps(client._get_proxy()))")
    env = {"PATH": "/usr/bin:/bin", "mqtt_proxy": "http://proxy.example:3128"}
    got = _run(code, env)
    assert got == {"proxy_type": 3, "proxy_addr": "proxy.example", "proxy_port": 3128}


def test_an_already_imported_module_is_left_alone() -> None:
    got = _run("import json, sys, urllib.request\n"
               "real = sys.modules['urllib.request']\n"
               "from packet_forwarder.lazy_urllib import defer_urllib_request\n"
               "defer_urllib_request()\n"
               "print(json.dumps({'same': sys.modules['urllib.request'] is real\n"
               "                          and urllib.request is real}))")
    assert got == {"same": True}


def test_threads_using_it_first_at_once_all_get_one_real_module() -> None:
    got = _run("import json, sys, threading\n"
               "import packet_forwarder.lazy_urllib\n"
               "stub = sys.modules['urllib.request']\n"
               "barrier = threading.Barrier(8)\n"
               "seen = []\n"
               "def use():\n"
               "    barrier.wait()\n"
               "    seen.append(stub.urlopen)\n"
               "threads = [threading.Thread(target=use) for _ in range(8)]\n"
               "for t in threads: t.start()\n"
               "for t in threads: t.join()\n"
               "real = sys.modules['urllib.request']\n"
               "print(json.dumps({'one': all(f is real.urlopen for f in seen),\n"
               "                  'n': len(seen), 'real': real is not stub}))")
    assert got == {"one": True, "n": 8, "real": True}
