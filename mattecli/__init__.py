"""mattecli: pull mattes (alpha and clean foreground) from video and photos."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mattecli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
