"""Engine errors: each carries one sentence a user can act on, never a traceback."""

from __future__ import annotations


class EngineError(Exception):
    """Base class. ``str(error)`` is a complete sentence fit for a status line."""


class ModelNotFoundError(EngineError):
    """The id is not a folder, a file, a cached Hub model or a Hub repository."""


class NotCachedOfflineError(EngineError):
    """A Hub id that is not in the local cache while the Hub cannot be reached."""


class MissingFilesError(EngineError):
    """A folder or cache entry lacks the files needed to load the model."""


class DeviceUnavailableError(EngineError):
    """The requested device (cuda, cuda:N, mps) is not available here."""


class QuantizationError(EngineError):
    """The requested quantization cannot run on this device or install."""


class OutOfMemoryError(EngineError):
    """The model (or its cache) does not fit in the memory that is free."""


class SettingsError(EngineError, ValueError):
    """A generation setting has an unknown name or an invalid value."""


class TemplateError(EngineError):
    """The chat template cannot be read or rendered."""


class GenerationError(EngineError):
    """Generation failed part way; the partial text is kept by the caller."""


class ContextLengthError(EngineError):
    """The last message (with the system prompt) does not fit the model's context."""
