"""Configuration: defaults < config.toml < TICTACTOE_* environment < command-line flags."""

import importlib.util
from pathlib import Path

import pytest

from tictactoe.cli import new_event_loop
from tictactoe.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_config_toml_sets_every_knob_with_a_comment():
    text = (ROOT / "config.toml").read_text()
    config = load_config(ROOT / "config.toml", {})
    assert config == Config()  # the file states the defaults
    for knob in Config.__dataclass_fields__:
        line = next(line for line in text.splitlines() if line.startswith(f"{knob} "))
        assert "#" in line, f"{knob} has no comment"


def test_environment_overrides_the_file_and_flags_override_both(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("port = 9000\npoll_timeout = 5\n")
    env = {"TICTACTOE_PORT": "9100", "TICTACTOE_DB": "/tmp/x.db", "UNRELATED": "1"}
    config = load_config(file, env, {"port": "9200", "host": None})
    assert (config.port, config.db, config.poll_timeout, config.host) == (9200, "/tmp/x.db", 5.0, "127.0.0.1")


@pytest.mark.parametrize(
    ("text", "env", "fragment"),
    [
        ("port = 'x'\n", {}, "port must be an integer"),
        ("nope = 1\n", {}, "unknown setting 'nope'"),
        ("port = \n", {}, "not valid TOML"),
        ("", {"TICTACTOE_POLL_TIMEOUT": "soon"}, "TICTACTOE_POLL_TIMEOUT"),
        ("", {"TICTACTOE_TURN_TIMEOUT": "0"}, "turn_timeout must be a number of seconds above 0"),
        ("port = 70000\n", {}, "port must be from 0 to 65535"),
        ("sqlite_synchronous = 'sometimes'\n", {}, "sqlite_synchronous"),
        ("", {"TICTACTOE_EVENT_LOOP": "trio"}, "event_loop must be one of auto, uvloop, asyncio"),
    ],
)
def test_bad_settings_are_one_clear_line(tmp_path, text, env, fragment):
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(file, env)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_missing_named_config_file_is_an_error_but_a_missing_default_is_not(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", {})
    monkeypatch.chdir(tmp_path)
    assert load_config(None, {}) == Config()


def test_the_event_loop_setting_picks_asyncio_or_uvloop_and_auto_takes_uvloop_when_installed():
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    for choice, module in [("asyncio", "asyncio"), ("auto", "uvloop" if has_uvloop else "asyncio")]:
        loop = new_event_loop(choice)
        try:
            assert type(loop).__module__.split(".")[0] == module
        finally:
            loop.close()
    if not has_uvloop:
        with pytest.raises(ConfigError, match="uvloop is not installed"):
            new_event_loop("uvloop")
