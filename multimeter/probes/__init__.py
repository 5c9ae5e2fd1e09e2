"""Probes beyond ``ResourceProbe``: each in its own module."""

from multimeter.probes.psutil import PsutilProbe
from multimeter.probes.system import SystemProbe

__all__ = ["PsutilProbe", "SystemProbe"]
