"""The simulator wing: everything that exists only because the concentrator is emulated.

The inject socket, the virtual sensors, the emulated TX log lines and the demo's local
broker live here. The pipeline never imports this package: the daemon wires it in
through hooks (``after_poll``, ``on_loaded``, extra device sessions for the edge stage),
and only this wing reads the emulated chip the radio door hands back.
"""
