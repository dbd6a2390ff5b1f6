"""Lesion Desktop: decision support for dermoscopy images of skin lesions (not a diagnosis)."""

__version__ = "0.1.0"
