"""The one exception type featx raises for problems a user can act on."""


class FeatxError(Exception):
    """A user-facing error: the message says what went wrong and what to do about it."""


def exception_line(exc: BaseException) -> str:
    """`Type: first line of the message` (at most 200 characters of it), to quote an exception in a FeatxError's
    one line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
