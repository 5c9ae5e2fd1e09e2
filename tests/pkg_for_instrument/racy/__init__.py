"""A package whose submodule ``slow`` pauses in the middle of its import while a test
sets ``gate`` to ``(started, proceed)`` events."""

gate = None
