"""The process layer: supervised subprocesses, their pipes and process groups, and named limits.

It reads its settings (the kill grace, the subprocess limiter) from the
context variables of :mod:`corral._core._settings`, which task scopes write;
it imports only :mod:`corral._core` and :mod:`corral.tracing`, never a scope.
"""
