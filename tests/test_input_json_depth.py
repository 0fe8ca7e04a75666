"""Issue 16 point 6: deeply nested JSON on the inject or status socket is one rejection line."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.sim.inject import InjectError, parse_inject_datagram
from packet_forwarder.json_input import MAX_DEPTH, JsonInputError, loads_bounded
from tests.test_status import raw_request, serve

DEEP_LIST = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
JUST_TOO_DEEP = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)


@pytest.mark.parametrize("data", [DEEP_LIST, DEEP_OBJECT, JUST_TOO_DEEP],
                         ids=["list", "object", "depth_plus_one"])
def test_bounded_loader_refuses_deep_nesting_without_recursion_error(data: bytes) -> None:
    with pytest.raises(JsonInputError, match="nested deeper"):
        loads_bounded(data)


def test_bounded_loader_accepts_its_depth() -> None:
    assert loads_bounded(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


@pytest.mark.parametrize("data", [DEEP_LIST[:60_000] + b"]" * 30_000, DEEP_OBJECT,
                                  b'{"phy_payload": ' + JUST_TOO_DEEP + b"}"])
def test_inject_datagram_nested_deep_is_rejected_not_json(data: bytes) -> None:
    with pytest.raises(InjectError) as info:
        parse_inject_datagram(data)
    assert info.value.reason == "not_json"


def test_status_socket_rejects_deep_json_in_one_line_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"

    def client() -> list[dict[str, object]]:
        # under the 4 KiB request limit, so the parser (not the size check) meets them
        return [raw_request(path, b"[" * 2_000 + b"]" * 2_000 + b"\n"),
                raw_request(path, b'{"a":' * 700 + b"1" + b"}" * 700 + b"\n"),
                raw_request(path, b'{"command": "status"}\n')]

    with capture_logs() as logs:
        answers = serve(path, lambda: {"uptime_s": 1.0}, client)
    assert [a["ok"] for a in answers] == [False, False, True]
    rejected = [e for e in logs if e["event"] == "status_request_rejected"]
    assert len(rejected) == 2 and all(e["log_level"] == "warning" for e in rejected)
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
