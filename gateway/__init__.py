"""The gateway daemon: configuration, CLI, logging and the wiring of all layers."""

__version__ = "0.1.0"
