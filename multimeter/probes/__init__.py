"""Probes beyond ``ResourceProbe``: each in its own module.

``NvmlProbe`` is not imported here (it needs ``nvidia-ml-py``): import it from
``multimeter.probes.nvml``, or as ``multimeter.NvmlProbe``.
"""

from multimeter.probes.psutil import PsutilProbe
from multimeter.probes.system import SystemProbe

__all__ = ["PsutilProbe", "SystemProbe"]
