"""The parts of ``multimeter visualization`` (see :mod:`multimeter.visualization`)."""
