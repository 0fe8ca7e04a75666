"""Concentrator checks for ``lora-gateway doctor``: one result per question an installer asks.

Each function returns :class:`HalCheck` values (name, ok/warn/fail, detail, what
to do) and never raises for a hardware problem: the problem is the result. They
work the same against the emulator (a board whose SPI transport is emulated) and
a real board. :func:`run_concentrator_checks` runs them in the order one fixes
things: SPI device, reset and chip version, EUI, model, bring-up, counter,
temperature, GPS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from hal.errors import ChipNotAnsweringError, HalError
from hal.gps_time import GpsReader
from hal.sx1302 import Sx1302Concentrator
from hal.types import ChannelPlan

Status = Literal["ok", "warn", "fail"]
COUNTER_GAP_S = 0.05
GPS_WAIT_S = 3.0
GPS_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class HalCheck:
    """Same fields as the CLI's check result, so the lead can convert one to the other."""

    name: str
    status: Status
    detail: str
    hint: str = ""


def check_spi_device(device: str, *, exists: Callable[[str], bool] = os.path.exists,
                     accessible: Callable[[str], bool] = lambda p: os.access(p, os.R_OK | os.W_OK)
                     ) -> HalCheck:
    """The SPI device node exists and this user may open it (the emulator always passes)."""
    if device == "emulator":
        return HalCheck("spi", "ok", "emulated SPI transport")
    if not exists(device):
        return HalCheck("spi", "fail", f"{device} does not exist",
                        "enable SPI (raspi-config: Interface Options → SPI, or dtparam=spi=on "
                        "in /boot/firmware/config.txt) and reboot")
    if not accessible(device):
        return HalCheck("spi", "fail", f"{device} exists but is not readable/writable by this user",
                        "run as the service user, which is in the spi group (or use sudo)")
    return HalCheck("spi", "ok", f"{device} present and accessible")


def check_chip(conc: Sx1302Concentrator) -> list[HalCheck]:
    """Reset, version, EUI and model; after a failed version check the rest is not attempted."""
    try:
        version = conc.probe()
    except ChipNotAnsweringError as exc:
        return [HalCheck("chip", "fail", str(exc),
                         "check the board is seated, SPI is enabled and the board profile's "
                         "reset line is right")]
    except HalError as exc:
        return [HalCheck("chip", "fail", str(exc), "check wiring and the board profile")]
    results = [HalCheck("chip", "ok", f"version 0x{version:02X} on {conc.spi_name}")]
    try:
        eui = conc.eui()
        model = conc.read_model()
    except HalError as exc:
        return [*results, HalCheck("eui", "fail", str(exc), "SPI link unreliable: check wiring")]
    if eui in (bytes(8), b"\xff" * 8):
        results.append(HalCheck("eui", "warn", f"EUI {eui.hex()} looks unprogrammed",
                                "set gateway.id in the configuration"))
    else:
        results.append(HalCheck("eui", "ok", eui.hex()))
    status: Status = "ok" if model in ("SX1302", "SX1303") else "warn"
    results.append(HalCheck("model", status, model,
                            "" if status == "ok" else "not an SX1302/SX1303: unsupported chip"))
    return results


def check_bring_up(conc: Sx1302Concentrator, plan: ChannelPlan) -> HalCheck:
    """The full start: radios, channels, firmware load and handshakes."""
    try:
        conc.start(plan)
    except HalError as exc:
        return HalCheck("bring-up", "fail", str(exc), "see the message; firmware problems name "
                        "the file to install")
    return HalCheck("bring-up", "ok", f"radios, channels and firmware up ({conc.model})")


def check_counter(conc: Sx1302Concentrator, sleep: Callable[[float], None]) -> HalCheck:
    """Two counter reads a little apart must differ: the 32 MHz clock runs."""
    try:
        first = conc.counter_us()
        sleep(COUNTER_GAP_S)
        second = conc.counter_us()
    except HalError as exc:
        return HalCheck("counter", "fail", str(exc), "check the SPI link")
    if second == first:
        return HalCheck("counter", "fail", f"counter stuck at {first} µs",
                        "the radio clock is missing: check clock_source in the board profile")
    return HalCheck("counter", "ok", f"running ({first} → {second} µs)")


def check_temperature(conc: Sx1302Concentrator) -> HalCheck | None:
    """The board's sensor, when the profile says one is fitted (None: nothing to check)."""
    if conc.board.temperature_sensor is None:
        return None
    if not conc.has_temperature_sensor:
        return HalCheck("temperature", "warn", "I2C bus could not be opened",
                        "enable I2C (raspi-config: Interface Options → I2C); RSSI uses 25 °C")
    try:
        celsius = conc.read_sensor_c()
    except HalError as exc:
        return HalCheck("temperature", "warn", str(exc), "RSSI compensation assumes 25 °C")
    if not -40.0 <= celsius <= 125.0:
        return HalCheck("temperature", "warn", f"{celsius:.1f} °C is implausible",
                        "check the sensor")
    return HalCheck("temperature", "ok", f"{celsius:.1f} °C")


def check_gps(reader: GpsReader, sleep: Callable[[float], None],
              wait_s: float = GPS_WAIT_S) -> list[HalCheck]:
    """Listen for a few seconds: a fix from NMEA, and PPS-paired time from NAV-TIMEGPS."""
    for _ in range(max(1, round(wait_s / GPS_POLL_S))):
        reader.poll()
        if reader.status.has_fix and reader.status.syncs >= 2:
            break
        sleep(GPS_POLL_S)
    status = reader.status
    if status.rmc is None and status.gga is None and status.nav is None:
        return [HalCheck("gps", "fail", f"no data from the receiver in {wait_s:g} s",
                         "enable the UART (raspi-config: Serial Port, no login shell) and check "
                         "the gps_receiver.uart in the board profile")]
    sats = status.gga.satellites if status.gga is not None else 0
    fix = (HalCheck("gps", "ok", f"fix, {sats} satellites") if status.has_fix else
           HalCheck("gps", "warn", "receiver talks but has no fix yet",
                    "give the antenna a view of the sky; a cold start takes minutes"))
    ref = reader.clock.reference
    if reader.clock.valid and status.syncs >= 2 and ref is not None:
        pps = HalCheck("pps", "ok", f"PPS paired with GPS time (crystal error "
                                    f"{(ref.xtal_err - 1) * 1e6:+.2f} ppm)")
    else:
        pps = HalCheck("pps", "warn" if not status.has_fix else "fail",
                       "no PPS-latched counter paired with GPS time yet",
                       "needs a fix; if there is one, the PPS line does not reach the SX1302")
    return [fix, pps]


def run_concentrator_checks(conc: Sx1302Concentrator, *, sleep: Callable[[float], None],
                            plan: ChannelPlan | None = None,
                            gps: Callable[[], GpsReader] | None = None) -> list[HalCheck]:
    """Everything above in order; stops after a failure that makes later checks meaningless."""
    results = [check_spi_device(conc.spi_name)]
    if results[0].status == "fail":
        return results
    chip = check_chip(conc)
    results += chip
    if any(r.status == "fail" for r in chip):
        return results
    if plan is not None:
        results.append(check_bring_up(conc, plan))
        if results[-1].status == "fail":
            return results
    results.append(check_counter(conc, sleep))
    temperature = check_temperature(conc)
    if temperature is not None:
        results.append(temperature)
    if gps is not None and conc.board.gps is not None:
        try:
            reader = gps()
        except (OSError, HalError) as exc:
            results.append(HalCheck("gps", "fail", f"cannot open the GPS UART: {exc}",
                                    "enable the UART and check gps_receiver.uart"))
        else:
            try:
                results += check_gps(reader, sleep)
            finally:
                reader.close()
    return results
