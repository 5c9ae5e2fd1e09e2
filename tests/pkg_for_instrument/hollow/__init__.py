"""A package whose ``__init__`` defines nothing (as python-dateutil's)."""
