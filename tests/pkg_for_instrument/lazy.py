"""A module that tests import only after instrument() names it."""


def load(name):
    return f"loaded {name}"


def other():
    return "not included"
