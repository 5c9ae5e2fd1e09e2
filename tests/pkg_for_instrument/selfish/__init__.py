"""A package that instruments itself while it is being imported."""

import multimeter

handle = multimeter.instrument(__name__)

from .util import helper  # noqa: E402 - imported after instrument() on purpose


def late():
    return "late"


__all__ = ["handle", "helper", "late"]
