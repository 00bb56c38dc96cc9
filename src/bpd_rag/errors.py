"""Errors a user can act on: each message says what went wrong and how to fix it."""


class BpdRagError(Exception):
    """Base class of errors shown to users as they are."""


class IndexMissingError(BpdRagError):
    pass


class IndexCorruptError(BpdRagError):
    pass


class StoreUnavailableError(IndexMissingError):
    """The index cannot be reached now (a Chroma server down or not answering in time); it may work again later."""


class CorpusFileError(BpdRagError):
    """A corpus file that cannot be read; ingest reports it and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ConfigurationError(BpdRagError):
    pass


class LLMUnavailableError(BpdRagError):
    pass
