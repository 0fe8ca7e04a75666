"""Hardware abstraction for the SX1302 concentrator.

Everything above this package sees only :mod:`hal.types` records and the
:class:`hal.interface.Concentrator` protocol; SPI bytes, registers and GPIO
lines stay in here. Backends are imported only when chosen, so CI never
imports ``spidev`` or ``gpiod``.
"""
