"""What a failed start tells the installer: one error line naming the fault and the fix.

A fault at start (missing firmware, no SPI device, no chip, a bad configuration)
does not go away by retrying, so the daemon exits with :data:`EXIT_START_FAULT`
(78, ``EX_CONFIG`` from sysexits.h), which the unit lists in
``RestartPreventExitStatus=``: the service stays failed with the reason in its
journal instead of restarting every 10 s. Every fix names ``doctor`` as the next
step, since it checks the rest of the installation in one go.
"""

from __future__ import annotations

from hal.errors import ChipNotAnsweringError, ChipVersionError, FirmwareError, HalError

EXIT_START_FAULT = 78
"""sysexits.h EX_CONFIG; systemd/lora-gateway.service: RestartPreventExitStatus=78."""
NEXT_STEP = "then run `sudo lora-gateway doctor` and `sudo systemctl restart lora-gateway`"


def describe_start_fault(exc: BaseException) -> tuple[str, str]:
    """(fault, fix) for an exception raised while the concentrator opened or started."""
    fault = str(exc) or type(exc).__name__
    if isinstance(exc, FirmwareError):
        fault = fault.split(" — ")[0]  # the HAL's own hint repeats the fix below
        fix = "install the firmware with `sudo lora-gateway firmware install`"
    elif isinstance(exc, ChipNotAnsweringError | ChipVersionError):
        fix = ("check the concentrator is seated and powered, and concentrator.board / "
               "spi_device match it")
    elif isinstance(exc, ImportError):
        module = getattr(exc, "name", None) or "a hardware library"
        fix = (f"install the Debian package for the Python module {module} "
               "(python3-spidev, python3-libgpiod)")
    elif isinstance(exc, PermissionError):
        fix = "the service user lacks access to the device: check its groups and DeviceAllow="
    elif isinstance(exc, HalError | OSError):
        fix = "check SPI is enabled (dtparam=spi=on) and the concentrator settings"
    else:
        fix = "check the concentrator section of the configuration"
    return fault, f"{fix}; {NEXT_STEP}"
