"""The bottom layer: what every other layer of corral may use, and nothing above it.

* :mod:`._settings`: context variables that scopes write and primitives read
  (the kill grace, the subprocess limiter);
* :mod:`._limiters`: capacity limiters and the per-event-loop registry;
* :mod:`._checks`: argument checks and their messages;
* :mod:`._procfs`: the one parser of ``/proc``;
* :mod:`._tail`: the bounded output buffer;
* :mod:`._config_files`: the one loader of TOML, YAML and JSON configuration files;
* :mod:`._public`: what the public packages use to present their names.

Nothing here imports any other part of corral.
"""
