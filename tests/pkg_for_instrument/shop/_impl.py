"""A private submodule where the shop defines its functions and classes."""

__all__ = ["Cart", "price", "total"]


def price(item):
    return len(item)


def total(items):
    return sum(price(item) for item in items)


def _rounded(amount):
    return round(amount)


class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return self

    @classmethod
    def empty(cls):
        return cls()

    @staticmethod
    def currency():
        return "EUR"
