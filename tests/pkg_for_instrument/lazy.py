"""A small module for instrument() tests."""

from os.path import join  # imported, not defined here: never instrumented


def load(name):
    return f"loaded {name}"


def transform(rows):
    return [r * 2 for r in rows]


def _private():
    return "hidden"


class Loader:
    def run(self, x):
        return load(x)

    @classmethod
    def create(cls):
        return cls()

    @staticmethod
    def version():
        return 2


__all__ = ["Loader", "join", "load", "transform"]
