"""The gateway's one configuration file (TOML), validated once at start.

Every section is a frozen dataclass, so the rest of the code receives typed,
checked values and never looks at raw TOML. ``load_config`` raises
:class:`ConfigError` with one line naming the file, key, value and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from common.toml_reader import ConfigError, TableReader
from gateway.config_servers import ServerSection, read_servers, route_filter
from packet_forwarder.regions import RegionError, RegionPlanError, available_regions, load_region
from packet_forwarder.routing import RouteFilter

__all__ = ["Config", "ConfigError", "load_config", "load_config_text"]

EUI_PATTERN = r"[0-9a-fA-F]{16}"
KEY_PATTERN = r"[0-9a-fA-F]{32}"
DEVADDR_PATTERN = r"[0-9a-fA-F]{8}"
REGIONS = tuple(available_regions())
BACKENDS = ("emulator", "sx1302", "sx1302_usb")


@dataclass(frozen=True)
class GatewaySection:
    id: str | None
    """16 lowercase hex digits; ``None`` means: read the concentrator's EUI."""
    status_socket: Path | None
    """Where ``lora-gateway status`` asks; ``None``: the service's runtime directory."""


@dataclass(frozen=True)
class SensorConfig:
    """A virtual ABP device of the emulator, sending real LoRaWAN frames on a timer."""

    name: str
    dev_addr: str
    nwk_s_key: str
    app_s_key: str
    interval_s: float
    kind: str
    frequency_hz: int | None
    spreading_factor: int


@dataclass(frozen=True)
class EmulatorSection:
    inject_socket: Path | None
    eui: str
    sensors: tuple[SensorConfig, ...]
    fault: str | None
    """Test hook: "no_answer" makes the emulated chip silent (for doctor's tests)."""
    noise_floor_dbm: float = -110.0
    """What the emulated SX1261 hears where nothing transmits."""
    busy_channels: tuple[tuple[int, float], ...] = ()
    """(frequency Hz, level dBm) the emulated SX1261 hears as occupied (LBT, survey)."""
    model: str = "SX1302"
    """"SX1303" emulates the chip with fine timestamps."""


@dataclass(frozen=True)
class LbtSection:
    """Listen-before-talk on the board's SX1261 (``[concentrator.lbt]``)."""

    enabled: bool = False
    rssi_target_dbm: int | None = None
    """Busy above this; None: the region's rule."""
    scan_time_us: int | None = None
    """128 or 5000; None: the region's rule."""
    refuse_without: bool = False
    """Where the region requires LBT and it is not available: refuse downlinks (TX_FREQ)
    instead of sending without it."""


@dataclass(frozen=True)
class ConcentratorSection:
    backend: str
    region: str
    board: str
    spi_device: str
    usb_device: str
    """The USB concentrator's serial port (backend ``sx1302_usb``)."""
    poll_interval_s: float
    emulator: EmulatorSection
    firmware_dir: Path | None
    """AGC/ARB firmware images, written by ``lora-gateway firmware install`` (state folder)."""
    sub_band: int | None
    """Grid regions (US915, AU915): which block of 8 uplink channels; None: the region's default."""
    lbt: LbtSection = LbtSection()


@dataclass(frozen=True)
class MqttSection:
    server: str
    topic_prefix: str
    marshaler: str
    username: str | None
    password: str | None
    ca_cert: Path | None
    client_cert: Path | None
    client_key: Path | None
    keepalive_s: int
    stats_interval_s: float
    max_inflight: int
    route: RouteFilter = field(default_factory=RouteFilter)
    """Which uplinks this server gets (``dev_addr_prefixes``/``join_eui_prefixes``; all)."""


@dataclass(frozen=True)
class BufferSection:
    path: Path
    commit_interval_s: float
    max_size_mb: float
    max_age_days: float
    drain_rate_per_s: float
    memory_max_records: int


@dataclass(frozen=True)
class ForwarderSection:
    forward_crc_error: bool


@dataclass(frozen=True)
class KeysSection:
    """Where device keys are held at the edge; ``store`` None disables MIC checks."""

    store: Path | None
    key_file: Path
    flush_interval_s: float
    sync_secret_file: Path | None


@dataclass(frozen=True)
class EdgeSection:
    """The per-class policy of the edge checks, as ``EdgePolicy.from_mapping`` takes it."""

    policy: dict[str, object]


@dataclass(frozen=True)
class DownlinkSection:
    """Just-in-time TX queue margins (µs, converted from the file's ms/s) and the TX limits."""

    load_margin_us: int
    min_lead_us: int
    max_advance_us: int
    guard_us: int
    immediate_lead_us: int
    queue_capacity: int
    antenna_gain_dbi: float
    plan_file: Path | None
    """Where an accepted ``command/config`` plan is kept; None: next to the buffer file."""


@dataclass(frozen=True)
class ClassBSection:
    """GPS time for class B, and the beacon this gateway sends when it has it."""

    gps: str
    """"board": the board's GPS receiver if its profile has one (with the emulated
    concentrator, a receiver emulated on the chip's PPS input); "none": class B refused."""
    emulator_start_gps_s: int
    """GPS second the emulated receiver starts at (tests pick one just before a beacon)."""
    beacon: bool
    beacon_power_eirp_dbm: int
    latitude: float
    longitude: float


@dataclass(frozen=True)
class LogSection:
    level: str
    format: str


@dataclass(frozen=True)
class Config:
    source: str
    gateway: GatewaySection
    concentrator: ConcentratorSection
    mqtt: MqttSection
    buffer: BufferSection
    forwarder: ForwarderSection
    keys: KeysSection
    edge: EdgeSection
    log: LogSection
    downlink: DownlinkSection
    class_b: ClassBSection
    servers: tuple[ServerSection, ...] = ()
    """``[[server]]``: network servers beyond ``[mqtt]`` (server ``default``)."""


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raises ``ConfigError`` (also for unreadable or bad TOML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        detail = f"cannot be read: {exc.strerror}"
        raise ConfigError(str(path), "(file)", str(path), detail) from exc
    except UnicodeDecodeError as exc:
        detail = f"not UTF-8 text (byte {exc.start}); is it a binary file?"
        raise ConfigError(str(path), "(file)", str(path), detail) from None
    return load_config_text(text, source=str(path), base_dir=path.resolve().parent)


def load_config_text(text: str, *, source: str, base_dir: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", "", f"not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses per nesting level of arrays/inline tables
        raise ConfigError(source, "(syntax)", "", "not valid TOML: nested too deeply") from None
    root = TableReader(data, "", source, base_dir)
    concentrator = _concentrator(root.table("concentrator"))
    config = Config(
        source=source,
        gateway=_gateway(root.table("gateway")),
        concentrator=concentrator,
        mqtt=_mqtt(root.table("mqtt")),
        buffer=_buffer(root.table("buffer")),
        forwarder=_forwarder(root.table("forwarder")),
        keys=_keys(root.table("keys")),
        edge=_edge(root.table("edge")),
        log=_log(root.table("log")),
        downlink=_downlink(root.table("downlink"), concentrator.poll_interval_s),
        class_b=_class_b(root.table("class_b")),
        servers=read_servers(root.tables("server"), _mqtt),
    )
    root.finish()
    return config


def demo_config_text() -> str:
    """The embedded demo configuration (emulated concentrator and virtual sensors)."""
    # Next to this module, not importlib.resources: see packet_forwarder.regions.loader.
    return (Path(__file__).resolve().parent / "demo.toml").read_text(encoding="utf-8")


def _gateway(t: TableReader) -> GatewaySection:
    gid = t.string("id", None, pattern=EUI_PATTERN,
                   pattern_text="16 hex digits, e.g. 0016c001ff10a235")
    status_socket = t.path("status_socket", None)
    t.finish()
    return GatewaySection(id=gid.lower() if gid else None, status_socket=status_socket)


def _concentrator(t: TableReader) -> ConcentratorSection:
    section = ConcentratorSection(
        backend=t.string("backend", "emulator", choices=BACKENDS),
        region=t.string("region", "EU868", choices=REGIONS),
        board=_board(t),
        spi_device=t.string("spi_device", "/dev/spidev0.0"),
        usb_device=t.string("usb_device", "/dev/ttyACM0"),
        poll_interval_s=t.number("poll_interval_s", 0.01, low=0.001, high=1.0),
        emulator=_emulator(t.table("emulator")),
        firmware_dir=t.path("firmware_dir", "/var/lib/lora-gateway/firmware"),
        sub_band=t.integer("sub_band", None, low=1, high=16),
        lbt=_lbt(t.table("lbt")),
    )
    try:
        load_region(section.region).default_channel_plan(section.sub_band)
    except (RegionError, RegionPlanError) as exc:
        raise t.error("sub_band", section.sub_band, str(exc)) from exc
    t.finish()
    return section


def _board(t: TableReader) -> str:
    """A shipped board profile's name, or the path of a board file (``*.toml``)."""
    from hardware.board import BOARDS

    name: str = t.string("board", "corecell")
    if name not in BOARDS and not name.endswith(".toml"):
        raise t.error("board", name, f"one of {', '.join(sorted(BOARDS))} or a .toml board file")
    return name


def _lbt(t: TableReader) -> LbtSection:
    section = LbtSection(
        enabled=t.boolean("enabled", False),
        rssi_target_dbm=t.integer("rssi_target_dbm", None, low=-127, high=0),
        scan_time_us=t.integer("scan_time_us", None, low=128, high=5000),
        refuse_without=t.boolean("refuse_without", False),
    )
    if section.scan_time_us not in (None, 128, 5000):
        raise t.error("scan_time_us", section.scan_time_us, "128 or 5000 (the SX1261's scans)")
    t.finish()
    return section


def _busy_channel(t: TableReader) -> tuple[int, float]:
    row = (t.integer("frequency_hz", low=100_000_000, high=1_100_000_000),
           t.number("rssi_dbm", low=-140, high=0))
    t.finish()
    return row


def _emulator(t: TableReader) -> EmulatorSection:
    section = EmulatorSection(
        inject_socket=t.path("inject_socket", None),
        eui=t.string("eui", "0016c001ff10a235", pattern=EUI_PATTERN, pattern_text="16 hex digits"),
        sensors=tuple(_sensor(s) for s in t.tables("sensors")),
        fault=t.string("fault", None, choices=("no_answer",)),
        noise_floor_dbm=t.number("noise_floor_dbm", -110.0, low=-140, high=0),
        busy_channels=tuple(_busy_channel(b) for b in t.tables("busy_channels")),
        model=t.string("model", "SX1302", choices=("SX1302", "SX1303")),
    )
    t.finish()
    return section


def _sensor(t: TableReader) -> SensorConfig:
    sensor = SensorConfig(
        name=t.string("name"),
        dev_addr=t.string("dev_addr", pattern=DEVADDR_PATTERN,
                          pattern_text="8 hex digits").lower(),
        nwk_s_key=t.string("nwk_s_key", pattern=KEY_PATTERN, pattern_text="32 hex digits"),
        app_s_key=t.string("app_s_key", pattern=KEY_PATTERN, pattern_text="32 hex digits"),
        interval_s=t.number("interval_s", 10.0, low=0.01, high=86400.0),
        kind=t.string("kind", "water_meter",
                      choices=("water_meter", "bin_level", "air_quality", "energy")),
        frequency_hz=t.integer("frequency_hz", None, low=100_000_000, high=1_000_000_000),
        spreading_factor=t.integer("spreading_factor", 7, low=7, high=12),
    )
    t.finish()
    return sensor


def _mqtt(t: TableReader, url_key: str = "server") -> MqttSection:
    section = MqttSection(
        server=t.string(url_key, "mqtt://127.0.0.1:1883",
                        pattern=r"mqtts?://[^\s/:]+(:\d{1,5})?/?",
                        pattern_text="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
        topic_prefix=t.string("topic_prefix", "eu868", pattern=r"[^#+\s]*",
                              pattern_text="a topic prefix without spaces, '#' or '+'").strip("/"),
        marshaler=t.string("marshaler", "protobuf", choices=("protobuf", "json")),
        username=t.string("username", None),
        password=t.string("password", None),
        ca_cert=t.path("ca_cert", None),
        client_cert=t.path("client_cert", None),
        client_key=t.path("client_key", None),
        keepalive_s=t.integer("keepalive_s", 30, low=5, high=3600),
        stats_interval_s=t.number("stats_interval_s", 30.0, low=1.0, high=3600.0),
        max_inflight=t.integer("max_inflight", 100, low=1, high=10_000),
        route=route_filter(t),
    )
    port = re.fullmatch(r"mqtts?://[^\s/:]+(?::(\d+))?/?", section.server)
    if port is not None and port.group(1) is not None and not 1 <= int(port.group(1)) <= 65535:
        raise t.error("server", section.server, "the port must be from 1 to 65535")
    if (section.client_cert is None) != (section.client_key is None):
        raise t.error("client_key", str(section.client_key),
                      "client_cert and client_key go together")
    t.finish()
    return section


def _buffer(t: TableReader) -> BufferSection:
    section = BufferSection(
        path=t.path("path", "/var/lib/lora-gateway/buffer.sqlite"),
        commit_interval_s=t.number("commit_interval_s", 1.0, low=0.05, high=60.0),
        max_size_mb=t.number("max_size_mb", 256.0, low=1.0, high=1_000_000.0),
        max_age_days=t.number("max_age_days", 30.0, low=0.01, high=3650.0),
        drain_rate_per_s=t.number("drain_rate_per_s", 200.0, low=0.0, high=1_000_000.0),
        memory_max_records=t.integer("memory_max_records", 100_000, low=100, high=10_000_000),
    )
    t.finish()
    return section


def _forwarder(t: TableReader) -> ForwarderSection:
    section = ForwarderSection(forward_crc_error=t.boolean("forward_crc_error", False))
    t.finish()
    return section


def _keys(t: TableReader) -> KeysSection:
    section = KeysSection(
        store=t.path("store", "/var/lib/lora-gateway/keys.sqlite"),
        key_file=t.path("key_file", "/var/lib/lora-gateway/master.key"),
        flush_interval_s=t.number("flush_interval_s", 10.0, low=0.5, high=3600.0),
        sync_secret_file=t.path("sync_secret_file", None),
    )
    t.finish()
    return section


_FORWARD_DROP = ("forward", "drop")


def _edge(t: TableReader) -> EdgeSection:
    policy: dict[str, object] = {
        "known_valid": t.string("known_valid", "forward", choices=_FORWARD_DROP),
        "bad_mic": t.string("bad_mic", "drop", choices=_FORWARD_DROP),
        "unknown_devaddr": t.string("unknown_devaddr", "forward",
                                    choices=("forward", "drop", "netid_allowlist")),
        "join_request": t.string("join_request", "forward",
                                 choices=("forward", "joineui_allowlist")),
        "rejoin_request": t.string("rejoin_request", "forward", choices=_FORWARD_DROP),
        "proprietary": t.string("proprietary", "forward", choices=_FORWARD_DROP),
        "replay": t.string("replay", "drop", choices=("drop", "flag")),
        "invalid": t.string("invalid", "drop", choices=_FORWARD_DROP),
        "max_retransmissions": t.integer("max_retransmissions", 15, low=0, high=255),
        "netid_allowlist": tuple(_hex_list(t, "netid_allowlist", 6)),
        "joineui_allowlist": tuple(_hex_list(t, "joineui_allowlist", 16)),
    }
    t.finish()
    return EdgeSection(policy=policy)


def _hex_list(t: TableReader, key: str, digits: int) -> list[str]:
    raw = t.list_of_strings(key)
    for item in raw:
        cleaned = item.replace(":", "").replace("-", "")
        if len(cleaned) != digits or any(c not in "0123456789abcdefABCDEF" for c in cleaned):
            raise t.error(key, item, f"a list of {digits}-hex-digit values")
    return [item.replace(":", "").replace("-", "").lower() for item in raw]


def _log(t: TableReader) -> LogSection:
    section = LogSection(
        level=t.string("level", "info", choices=("debug", "info", "warning", "error")),
        format=t.string("format", "auto", choices=("auto", "console", "keyvalue", "json")),
    )
    t.finish()
    return section


def _downlink(t: TableReader, poll_interval_s: float) -> DownlinkSection:
    """Margins in the file are ms (s for max_advance); cross-checked against the poll interval.

    A packet is handed to the chip within ``load_margin_ms`` of its start by the
    poll that finds it due, and the chip holds one packet at a time, so two packets
    need ``guard_ms`` of silence between them for the second to be loaded after
    the first has left: both must exceed the poll interval.
    """
    poll_ms = poll_interval_s * 1000
    section = DownlinkSection(
        load_margin_us=round(t.number("load_margin_ms", 40.0, low=2.0, high=1000.0) * 1000),
        min_lead_us=round(t.number("min_lead_ms", 30.0, low=2.0, high=1000.0) * 1000),
        max_advance_us=round(t.number("max_advance_s", 512.0, low=1.0, high=2000.0) * 1e6),
        guard_us=round(t.number("guard_ms", 45.0, low=0.0, high=10_000.0) * 1000),
        immediate_lead_us=round(t.number("immediate_lead_ms", 80.0, low=2.0, high=10_000.0)
                                * 1000),
        queue_capacity=t.integer("queue_capacity", 32, low=1, high=1024),
        antenna_gain_dbi=t.number("antenna_gain_dbi", 0.0, low=-10.0, high=30.0),
        plan_file=t.path("plan_file", None),
    )
    if section.load_margin_us <= poll_ms * 1000:
        raise t.error("load_margin_ms", section.load_margin_us / 1000,
                      f"more than concentrator.poll_interval_s ({poll_ms:g} ms)")
    if section.guard_us < (poll_ms + 2) * 1000:
        raise t.error("guard_ms", section.guard_us / 1000,
                      f"at least the poll interval + 2 ms ({poll_ms + 2:g} ms)")
    if section.immediate_lead_us < section.min_lead_us:
        raise t.error("immediate_lead_ms", section.immediate_lead_us / 1000,
                      "at least min_lead_ms")
    t.finish()
    return section


def _class_b(t: TableReader) -> ClassBSection:
    section = ClassBSection(
        gps=t.string("gps", "board", choices=("board", "none")),
        emulator_start_gps_s=t.integer("emulator_start_gps_s", 1_400_000_000, low=0,
                                       high=(1 << 32) - 1),
        beacon=t.boolean("beacon", False),
        beacon_power_eirp_dbm=t.integer("beacon_power_eirp_dbm", 14, low=0, high=36),
        latitude=t.number("latitude", 0.0, low=-90.0, high=90.0),
        longitude=t.number("longitude", 0.0, low=-180.0, high=180.0),
    )
    t.finish()
    return section
