"""Configuration: defaults < config.toml < TICTACTOE_* environment < command-line flags."""

import dataclasses
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from tictactoe.cli import main, new_event_loop
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
        ("", {"TICTACTOE_LOG_FORMAT": "xml"}, "log_format must be text or json"),
        ("", {"TICTACTOE_EVENT_LOOP": "trio"}, "event_loop must be one of auto, uvloop, asyncio"),
        ("trusted_proxies = ['10.0.0.0/33']\n", {}, "trusted_proxies must list IP addresses or networks"),
        ("trusted_proxies = [1]\n", {}, "trusted_proxies must be a list of strings"),
        ("", {"TICTACTOE_TRUSTED_PROXIES": "10.0.0.1,proxy.local"}, "not 'proxy.local'"),
        ("cors_origins = ['https://a.example/path']\n", {}, "cors_origins must list origins"),
        ("max_polls_per_address = -1\n", {}, "max_polls_per_address must be from 0"),
        ("", {"TICTACTOE_CHAT_LIMIT_MESSAGES": "five"}, "chat_limit_messages must be an integer"),
        ("chat_limit_seconds = 0\n", {}, "chat_limit_seconds must be a number of seconds above 0"),
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


def test_the_log_format_comes_from_the_environment_and_the_flag_wins(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('log_format = "text"\n')
    assert load_config(file, {"TICTACTOE_LOG_FORMAT": "json"}).log_format == "json"
    assert load_config(file, {"TICTACTOE_LOG_FORMAT": "json"}, {"log_format": "text"}).log_format == "text"


def test_docs_config_md_lists_every_knob_with_its_default_environment_variable_and_flag(capsys):
    rows = {}
    for line in (ROOT / "docs" / "config.md").read_text().splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0]] = cells[1:]
    assert sorted(rows) == sorted(f.name for f in dataclasses.fields(Config)), "docs/config.md is out of date"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    flags = set(re.findall(r"--[a-z-]+", capsys.readouterr().out)) - {"--help", "--config"}
    for field in dataclasses.fields(Config):
        default, env, flag = rows[field.name][:3]
        value = tomllib.loads(f"v = {default}")["v"]
        assert (tuple(value) if isinstance(value, list) else value) == field.default, f"{field.name}: default"
        assert env == f"TICTACTOE_{field.name.upper()}"
        assert flag == ("--" + field.name.replace("_", "-") if flag != "—" else "—")
    assert {row[2] for row in rows.values()} - {"—"} == flags, "a serve flag is missing from docs/config.md"


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
