"""The one exception type featx raises for problems a user can act on."""


class FeatxError(Exception):
    """A user-facing error: the message says what went wrong and what to do about it."""
