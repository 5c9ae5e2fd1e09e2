"""One function under a module name and a class attribute; functions of other modules
kept on a class."""

import json
import textwrap


def parse(text):
    return text.split()


def from_text(cls, text):
    return cls()


class Parser:
    parse = staticmethod(parse)  # the module's function, reached from the class too
    from_text = classmethod(from_text)
    dedent = staticmethod(textwrap.dedent)  # the standard library's: left alone
    dumps = staticmethod(json.dumps)
    loads = json.loads

    @classmethod
    def tokens(cls, text):
        yield from text.split()
