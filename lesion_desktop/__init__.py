"""Lesion Desktop: decision support for dermoscopy images of skin lesions (not a diagnosis)."""

# The one place the version is written: pyproject.toml reads it (setuptools' dynamic version), and build.spec,
# scripts/build_installer.sh, the Windows workflow and the installers take it from there
# (tests/test_packaging.py fails on a version written anywhere else).
__version__ = "0.1.0"
