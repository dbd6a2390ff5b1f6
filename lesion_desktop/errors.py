"""The project's own error types: every failure a user can cause ends in one of these."""

from __future__ import annotations


class LesionError(Exception):
    """Base class; its message is written for the person using the program."""


class ImageLoadError(LesionError):
    """An image file or buffer that cannot be used (empty, not an image, corrupt, too large...)."""


class BundleError(LesionError):
    """A model bundle or ensemble that is missing, tampered with, truncated or inconsistent."""


class DatasetError(LesionError):
    """A training data folder that cannot be used as it is."""


class CancelledError(LesionError):
    """Long-running work stopped because the user asked it to."""
