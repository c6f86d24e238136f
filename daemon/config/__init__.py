"""Typed, validated, per-environment configuration (see `models` for the sections)."""

from daemon.config import checks as _checks  # noqa: F401  (registers cross-section checks)
from daemon.config import kinesis_references as _kinesis_refs  # noqa: F401  (readers' resources)
from daemon.config import references as _references  # noqa: F401  (resource reference checks)
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
