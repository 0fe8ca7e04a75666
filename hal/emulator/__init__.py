"""An SPI-level SX1302 emulator: the driver talks to it through the same frames as to a chip.

It ships with the package so users can run the gateway without hardware, and so
tests exercise the real driver code path.
"""
