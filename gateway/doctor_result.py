"""One line of ``lora-gateway doctor``: what was checked, how it went, and what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():4}  {self.name:<16} {self.detail}"
        return f"{text} — {self.hint}" if self.hint and self.status != "ok" else text

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def warn(name: str, detail: str, hint: str = "") -> CheckResult:
    return CheckResult(name, "warn", detail, hint)


def fail(name: str, detail: str, hint: str = "") -> CheckResult:
    return CheckResult(name, "fail", detail, hint)
