"""The project's error types.

``InputError`` is the only exception a user should ever see from bad input: its message is a single
line naming the file and the place (tensor, index, layer, key) that is wrong. The CLI prints it and
exits with status 2; the Python API raises it.

``Undecided`` is raised by the exact semantics when a certified enclosure cannot decide a sign
(transcendental ops); the verdict code turns it into ``null`` with the reason, never a guess.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped as Python's repr would (``\\n``,
    ``\\x1b``, ``\\u2028``): a message that echoes a user's string stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InputError(ValueError):
    """Bad input (file, tensor, layer, option): one line, names where. Non-printable characters
    of the message and the source (a newline in a dtype string or a file name) are escaped."""

    def __init__(self, message: str, *, source: str | None = None):
        self.source = source
        self.bare = message
        super().__init__(one_line(f"{source}: {message}" if source else message))

    def located(self, source: str) -> "InputError":
        return InputError(self.bare, source=source)


class Undecided(ArithmeticError):
    """An exact comparison that the current certified enclosure cannot decide."""
