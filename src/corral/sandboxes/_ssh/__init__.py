"""The ``"ssh"`` sandbox provider: samples on remote hosts over asyncssh.

Importing this package imports nothing heavy: the configuration models live
in :mod:`._config` (pydantic only), and the provider class, which needs
asyncssh, is loaded by the registry from :mod:`._environment` on first use.
"""
