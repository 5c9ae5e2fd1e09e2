"""A package that defines nothing itself and re-exports everything (as attrs and
more_itertools do)."""

from json import dumps  # another distribution's function: left alone

from ._impl import *  # noqa: F403 - the re-export under test
from ._impl import Cart as Basket  # a class under a second name
from ._impl import price as cost  # a function under a second name

__all__ = ["Basket", "Cart", "cost", "dumps", "price", "total"]  # noqa: F405
