"""Settings: defaults, then `config.toml`, then `TICTACTOE_<KNOB>` variables, then flags."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_FILE = Path("config.toml")
ENV_PREFIX = "TICTACTOE_"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|\*")  # scheme://host[:port], no path; or "*"


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line naming it and its source."""


@dataclass(frozen=True)
class Config:
    """Every knob of the server; `config.toml` documents each one."""

    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "tictactoe.db"
    poll_timeout: float = 30.0
    pending_timeout: float = 60.0
    turn_timeout: float = 600.0
    max_body_size: int = 16384
    max_name_length: int = 32
    max_chat_length: int = 500
    sqlite_synchronous: str = "full"
    shutdown_timeout: float = 10.0
    sqlite_busy_timeout: float = 5.0
    header_timeout: float = 60.0  # nginx's client_header_timeout; shorter races clients that pause between requests
    log_level: str = "info"
    max_polls_per_address: int = 256
    trusted_proxies: tuple[str, ...] = ()
    chat_limit_messages: int = 5
    chat_limit_seconds: float = 10.0
    cors_origins: tuple[str, ...] = ()
    log_format: str = "text"
    event_loop: str = "auto"

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "port", "must be from 0 to 65535")
        _check(bool(self.host), "host", "must not be empty")
        _check(bool(self.db), "db", "must not be empty")
        for knob in ("poll_timeout", "pending_timeout", "turn_timeout", "shutdown_timeout", "header_timeout"):
            _check(0 < getattr(self, knob) <= 86400, knob, "must be a number of seconds above 0, at most 86400")
        _check(256 <= self.max_body_size <= 16 * 1024 * 1024, "max_body_size", "must be from 256 to 16777216 bytes")
        _check(0 <= self.sqlite_busy_timeout <= 600, "sqlite_busy_timeout", "must be from 0 to 600 seconds")
        _check(1 <= self.max_name_length <= 256, "max_name_length", "must be from 1 to 256")
        _check(1 <= self.max_chat_length <= 10000, "max_chat_length", "must be from 1 to 10000")
        _check(
            self.sqlite_synchronous.lower() in {"off", "normal", "full", "extra"},
            "sqlite_synchronous",
            "must be one of off, normal, full, extra",
        )
        _check(
            self.event_loop.lower() in {"auto", "uvloop", "asyncio"},
            "event_loop",
            "must be one of auto, uvloop, asyncio",
        )
        _check(
            self.log_level.lower() in {"debug", "info", "warning", "error", "critical"},
            "log_level",
            "must be one of debug, info, warning, error, critical",
        )
        for knob in ("max_polls_per_address", "chat_limit_messages"):
            _check(0 <= getattr(self, knob) <= 10**6, knob, "must be from 0 (no limit) to 1000000")
        for proxy in self.trusted_proxies:
            _check(_is_network(proxy), "trusted_proxies", f"must list IP addresses or networks, not {proxy!r}")
        seconds = "must be a number of seconds above 0, at most 86400"
        _check(0 < self.chat_limit_seconds <= 86400, "chat_limit_seconds", seconds)
        for origin in self.cors_origins:
            _check(
                bool(_ORIGIN.fullmatch(origin)),
                "cors_origins",
                f"must list origins like https://example.org or *, not {origin!r}",
            )
        _check(self.log_format in {"text", "json"}, "log_format", "must be text or json")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _check(ok: bool, knob: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{knob} {rule}")


KNOBS = {f.name: f for f in fields(Config)}


def _coerce(knob: str, value: Any, source: str) -> Any:
    """`value` as the knob's type; strings (from the environment or flags) are parsed."""
    kind = KNOBS[knob].type
    try:
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            return float(value)
        if kind == "tuple[str, ...]":
            if isinstance(value, str):  # from the environment or a flag: comma-separated
                return tuple(item.strip() for item in value.split(",") if item.strip())
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ValueError
            return tuple(value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except ValueError:
        words = {"int": "an integer", "float": "a number", "tuple[str, ...]": "a list of strings"}
        word = words.get(str(kind), "a string")
        raise ConfigError(f"{knob} must be {word}, not {value!r} (from {source})") from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config; `path` None means `config.toml` if it exists, defaults otherwise."""
    values: dict[str, Any] = {}
    file = Path(path) if path is not None else DEFAULT_CONFIG_FILE
    if path is not None or file.exists():
        try:
            table = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config file {file}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{file} is not valid TOML: {err}") from None
        for knob, value in table.items():
            if knob not in KNOBS:
                raise ConfigError(f"unknown setting {knob!r} in {file}")
            values[knob] = _coerce(knob, value, str(file))
    for name, value in (env or {}).items():
        knob = name.removeprefix(ENV_PREFIX).lower()
        if name.startswith(ENV_PREFIX) and knob in KNOBS:
            values[knob] = _coerce(knob, value, name)
    for knob, value in (overrides or {}).items():
        if value is not None:
            values[knob] = _coerce(knob, value, f"--{knob.replace('_', '-')}")
    try:
        return Config(**values)
    except ConfigError as err:
        raise ConfigError(f"config error: {err}") from None
