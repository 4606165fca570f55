"""Every error gkd-search raises on purpose derives from :class:`GkdError`.

A :class:`UsageError` is a user mistake (bad option, bad file, missing data): the CLI prints
its message on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class GkdError(Exception):
    """Base class of every error gkd-search raises deliberately."""


class UsageError(GkdError):
    """A user mistake: the message names the bad value and how to fix it."""


class UnknownComponentError(UsageError):
    """A dataset, family or method name that no plugin provides."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, known
        plural = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"  # family -> families
        super().__init__(f"unknown {kind} {name!r}; known {plural}: {', '.join(sorted(known))}")


class SpaceError(UsageError):
    """A search-space file that cannot be used; the message names the file and the key."""


class DataMissingError(UsageError):
    """The dataset's files are not where they were looked for."""


class TrackingError(UsageError):
    """The MLflow tracking URI cannot be reached or used."""


class PluginError(GkdError):
    """A plugin that breaks the contract (duplicate names, failed import, bad component)."""


class PluginWarning(RuntimeWarning):
    """A plugin was skipped (it failed to import) or an observer hook raised; gkd-search went on.
    The CLI prints these as one line on stderr even when other warnings are silenced."""


class TrialFailed(GkdError):
    """A trial could not finish (for example its loss became NaN); the search goes on."""
