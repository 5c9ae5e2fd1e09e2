"""Functions that look at their caller's frame, as ``namedtuple()``, ``attr.make_class()``
and deprecation helpers do; instrument() leaves them unmeasured."""

import inspect
import sys
import warnings


def make_record(name):
    """A class of the caller's module, as ``namedtuple()`` makes."""
    return type(name, (), {"__module__": sys._getframe(1).f_globals["__name__"]})


def old_api():
    warnings.warn("old_api() is deprecated, use new_api()", DeprecationWarning, stacklevel=2)
    return new_api()


def new_api():
    return 2


def with_helper():
    """Only a function nested in it reads frames: measured."""

    def name():
        return sys._getframe(0).f_code.co_name

    return name()


class Factory:
    def build(self, name):
        caller = inspect.currentframe().f_back
        return type(name, (), {"__module__": caller.f_globals["__name__"]})

    def size(self):
        return 1
