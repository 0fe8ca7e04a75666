"""The floor every layer may stand on: generic helpers that import nothing of the project.

``toml_reader`` (typed, one-line-error reading of TOML tables, used by the gateway's
config and by the board profiles) and ``sqlite_migrate`` (numbered schema steps, used
by the buffer and the key store) live here so that no layer borrows them from a layer
above or beside it.
"""
