"""Hardware abstraction for the SX1302 concentrator.

Everything above this package sees only :mod:`hal.types` records, the
:class:`hal.interface.Concentrator` protocol and the :class:`hal.backends.Radio`
bundle that the one door, :func:`hal.backends.open_radio`, returns; SPI bytes,
registers and GPIO lines stay in here. Backends are imported only when chosen,
so CI never imports ``spidev`` or ``gpiod`` (``tests/test_layers.py`` holds the
gateway to that).
"""
