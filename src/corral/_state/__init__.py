"""The state layer: per-sample stores, change recording, events, transcripts, spans, subtasks.

Everything here is reached through context variables (the running sample's
store and transcript, the current span), which the sample scope sets. It
imports :mod:`corral._core` and :mod:`corral.tracing` only.
"""
