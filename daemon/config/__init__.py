"""Typed, validated, per-environment configuration (see `models` for the sections).

`load_config` checks a file on its own (models, declared resources and the references between
them); `daemon.worker.Catalog.load` adds what every worker kind names and checks, and is what the
daemon and the command line use.
"""

from daemon.config.errors import EX_CONFIG, ConfigError, ConfigIssue
from daemon.config.loader import LoadedConfig, config_version, load_config, select_config_file
from daemon.config.models import AwsConfig, Config, HealthConfig, LogConfig, RuntimeConfig

__all__ = [
    "EX_CONFIG",
    "AwsConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "HealthConfig",
    "LoadedConfig",
    "LogConfig",
    "RuntimeConfig",
    "config_version",
    "load_config",
    "select_config_file",
]
