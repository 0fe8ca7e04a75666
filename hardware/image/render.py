"""Render the image recipe's templates (``templates/*.in``) with checked values.

``string.Template`` with ``substitute`` (not ``safe_substitute``): a placeholder
without a value is an error, so a half-rendered file never reaches an image.
Run by ``build-image.sh``; CI renders the templates too and validates the result.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULTS = {
    "VERSION": "0.0.0",
    "REGION": "EU868",
    "BOARD": "corecell",
    "SPI_DEVICE": "/dev/spidev0.0",
    "MQTT_SERVER": "mqtt://chirpstack.local:1883",
    "TOPIC_PREFIX": "eu868",
}
_SAFE_VALUE = re.compile(r"[^\"\\\n\r]*")


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill ``${NAME}`` placeholders; raises KeyError naming a missing value."""
    for key, value in values.items():
        if not _SAFE_VALUE.fullmatch(value):
            raise ValueError(f"{key}: quotes, backslashes and newlines are not allowed")
    return Template(text).substitute(values)


def render_all(out_dir: Path, values: Mapping[str, str]) -> list[Path]:
    """Render every template into ``out_dir`` (name without ``.in``); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for template in sorted(TEMPLATES.glob("*.in")):
        target = out_dir / template.name.removesuffix(".in")
        target.write_text(render(template.read_text(encoding="utf-8"), values), encoding="utf-8")
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    values = dict(DEFAULTS)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in DEFAULTS:
            parser.error(f"--set {item!r}: KEY=VALUE with KEY one of {', '.join(DEFAULTS)}")
        values[key] = value
    try:
        for path in render_all(args.out, values):
            print(path)
    except (KeyError, ValueError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
