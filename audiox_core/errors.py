"""Exceptions with messages meant for people.

Every error the library raises on bad input is one of these, and its message names the
offending file, input or value and says what was expected.  Nodes turn them into ComfyUI errors
that name the node and the input.
"""


class AudioXError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(AudioXError, ValueError):
    """A config.json (or a config derived from a checkpoint) is malformed or unsupported."""


class CheckpointError(AudioXError, ValueError):
    """A weights file is unreadable, unsafe, truncated, or does not match the expected model."""


class InputError(AudioXError, ValueError):
    """A user input (media, time range, prompt, size ...) is unusable; the message says which."""


class FieldError(InputError):
    """An input error about one named field of a request or a setup (``field``), so a caller (a
    node, the CLI) can name its own input for it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class MediaError(InputError):
    """Audio/video could not be decoded or has no usable stream."""


class Interrupted(AudioXError):
    """Raised from a progress callback to stop long work (sampling, training, VAE ...)."""


class PathError(InputError):
    """A file or folder name resolves (after following symlinks) outside the folder(s) it must stay
    in, or is not a usable name at all.  The message names the input and the allowed folders."""


class SaveError(AudioXError, OSError):
    """A result could not be written (disk full, no permission, read-only folder ...).  The message
    names the file; no partial file is left behind."""


class OutputBusyError(InputError):
    """Another run is writing the same output file right now (one writer per output name)."""


class ConfigMismatchError(CheckpointError):
    """The config (given, beside the checkpoint or in its metadata) does not fit the checkpoint's
    weights; the message names the config."""
