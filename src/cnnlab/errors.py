"""Errors shared across floors (docs/architecture.md): defined on the ground floor so that a
lower layer can raise what a higher one documents, without importing upward."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key and the problem."""


class EnsembleError(ValueError):
    """An ensemble that cannot be built or combined as asked; the message names the problem."""
