"""Every TRACKER_ setting is declared once and documented in the README."""

import re
from pathlib import Path

import pytest

from tracker.foundation import settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme():
    documented = set(re.findall(r"`(TRACKER_[A-Z0-9_]+)`", README.read_text(encoding="utf-8")))
    missing = [s.name for s in settings.SETTINGS if s.name not in documented]
    assert not missing, f"settings missing from README.md: {missing}"


def test_the_readme_describes_each_setting_as_it_is_declared():
    rows = dict(
        re.findall(
            r"^\| `(TRACKER_[A-Z0-9_]+)` \| [^|]* \| (.*) \|$",
            README.read_text(encoding="utf-8"),
            re.MULTILINE,
        )
    )
    differ = {s.name: (s.help, rows[s.name]) for s in settings.SETTINGS if rows[s.name] != s.help}
    assert not differ, f"README.md describes settings otherwise than their help: {differ}"


def test_the_readme_documents_no_setting_that_does_not_exist():
    documented = set(
        re.findall(r"^\| `(TRACKER_[A-Z0-9_]+)`", README.read_text(encoding="utf-8"), re.MULTILINE)
    )
    unknown = documented - set(settings.BY_NAME)
    assert not unknown, f"README.md documents unknown settings: {unknown}"


def test_every_tracker_variable_used_in_code_is_declared():
    root = README.parent
    used = set()
    for folder in ("tracker", "web"):
        for path in (root / folder).rglob("*.py"):
            used |= set(re.findall(r'"(TRACKER_[A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert used <= set(settings.BY_NAME), used - set(settings.BY_NAME)


def test_values_come_from_the_environment_then_the_config_file_then_the_default(tmp_path):
    config = tmp_path / "tracker.conf"
    config.write_text("# comment\nTRACKER_TZ=Europe/Dublin\nTRACKER_MAX_GAP_S=90\n")
    environ = {"TRACKER_CONFIG": str(config), "TRACKER_MAX_GAP_S": "120"}
    assert settings.get("TRACKER_MAX_GAP_S", environ) == 120.0
    assert settings.get("TRACKER_TZ", environ) == "Europe/Dublin"
    assert settings.get("TRACKER_MIN_VISIT_S", environ) == 120.0


def test_an_unknown_key_in_the_config_file_is_an_error_naming_the_line(tmp_path):
    config = tmp_path / "tracker.conf"
    config.write_text("TRACKER_TZ=Europe/London\nTRACKER_MAX_GAPS=90\n")
    with pytest.raises(settings.SettingsError, match="line 2: unknown setting 'TRACKER_MAX_GAPS'"):
        settings.get("TRACKER_TZ", {"TRACKER_CONFIG": str(config)})


def test_the_embedded_sqlite_database_is_the_last_resort(tmp_path):
    environ = {"TRACKER_INSTANCE_PATH": str(tmp_path)}
    assert settings.database_url(None, environ) == f"sqlite:///{tmp_path / 'tracker.db'}"
    assert settings.database_url("postgresql+psycopg://x/y", environ) == "postgresql+psycopg://x/y"
    environ["TRACKER_DATABASE_URL"] = "sqlite:////tmp/other.db"
    assert settings.database_url(None, environ) == "sqlite:////tmp/other.db"
