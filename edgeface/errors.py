"""Named exceptions with messages a user can act on."""


class EdgefaceError(Exception):
    """Base class for every error edgeface raises on purpose."""


class ModelError(EdgefaceError):
    """A model file is missing, corrupt, or does not match its card."""


class ImageError(EdgefaceError):
    """An image cannot be read or decoded."""


class NoFaceError(EdgefaceError):
    """No usable face was found in an image."""


class ComparableFacesError(NoFaceError):
    """A photo shows several faces of comparable size, so which one it is of cannot be told."""


class GalleryError(EdgefaceError):
    """A gallery is missing, empty, corrupt, or made for another model."""


class ConfigError(EdgefaceError):
    """The configuration is invalid; the message names the key path."""


class BundleError(EdgefaceError):
    """A gallery bundle failed verification; the message is the reason."""
