"""The scope layer: task scopes, sample scopes, and the sandbox lifecycle they own.

Scopes write the settings that the layers below read (the context variables
of :mod:`corral._core._settings`, the running sample's store and transcript,
its sandboxes), and nothing below imports a scope.
"""
