"""Operations: settings, wiring of components, and the ``agentlog`` command line."""

from ops.settings import EmbeddedSettings, Settings
from ops.wiring import BACKENDS, ConfigError, open_log

__all__ = ["BACKENDS", "ConfigError", "EmbeddedSettings", "Settings", "open_log"]
