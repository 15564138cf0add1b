"""The one exception hierarchy of omni_ml.

::

    OmniMLError                         base of everything omni_ml raises on purpose
    ├── SchemaError(ValueError)         input tables break the histories contract (omni_ml.data)
    ├── LeakageError(ValueError)        a feature or label would see information from the wrong side of a cutoff
    ├── ConsentError(ValueError)        a decision would contact a customer on a channel without consent
    ├── ConfigError(ValueError)         a configuration value or file is invalid
    ├── DataInsufficientError(ValueError)  the data cannot support the requested model (one class, no contacts, ...)
    ├── ModelNotFoundError(LookupError) a model URI, alias or path does not resolve
    └── DriftError                      a scoring run's health verdict is bad and --fail-on-drift was asked (exit 3)

Bad data and bad arguments raise ``ValueError`` subclasses so that generic
``except ValueError`` code keeps working; messages say what, where, expected,
got and end with a ``Hint:`` where a known mistake is likely.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConsentError",
    "DataInsufficientError",
    "DriftError",
    "LeakageError",
    "ModelNotFoundError",
    "OmniMLError",
    "SchemaError",
]


class OmniMLError(Exception):
    """Base class of every error omni_ml raises on purpose."""


class SchemaError(OmniMLError, ValueError):
    """Input tables do not follow the histories contract (DESIGN.md section 3)."""


class LeakageError(OmniMLError, ValueError):
    """A feature or label would use information from the wrong side of a cutoff."""


class ConsentError(OmniMLError, ValueError):
    """A decision would contact a customer on a channel they have not consented to."""


class ConfigError(OmniMLError, ValueError):
    """A configuration value or file is invalid."""


class DataInsufficientError(OmniMLError, ValueError):
    """The data cannot support what was asked (a single class, no contacts, too few rows)."""


class ModelNotFoundError(OmniMLError, LookupError):
    """A model URI, registry alias or local path does not resolve to a model."""


class DriftError(OmniMLError):
    """The scored population drifted from the training reference and the job was asked to stop on it.

    ``report`` holds the :class:`omni_ml.monitor.MonitorReport` that decided; the CLI exits with code 3.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
