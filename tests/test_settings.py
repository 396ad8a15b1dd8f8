import re
from pathlib import Path

import pytest

from datasvc.settings import FIELDS, PROJECT_ROOT, Settings, SettingsError, redact_url


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.application_name == "datasvc"
    assert settings.max_body_bytes == 65536


def test_reads_and_types_each_variable():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@h/db",
            "DATASVC_POOL_MAX": "20",
            "DATASVC_ACQUIRE_TIMEOUT": "0.5",
            "DATASVC_ACCESS_LOG": "off",
            "DATASVC_SQL_DIR": "/srv/sql",
        }
    )
    assert settings.pool_max_size == 20
    assert settings.acquire_timeout == 0.5
    assert settings.access_log is False
    assert settings.sql_dir == Path("/srv/sql")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATASVC_POOL_MAX": "many"}, "DATASVC_POOL_MAX='many'"),
        ({"DATASVC_POOL_MAX": "0"}, "must be >= 1"),
        ({"DATASVC_ACQUIRE_TIMEOUT": "-1"}, "must be > 0"),
        ({"DATASVC_ACCESS_LOG": "maybe"}, "true or false"),
        ({"DATASVC_POOL_MIN": "5", "DATASVC_POOL_MAX": "2"}, "must not exceed"),
    ],
)
def test_bad_values_fail_loudly_naming_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/users", "postgresql://app:***@db:5432/users"),
        ("postgresql://app@db/users", "postgresql://app@db/users"),
        ("postgresql://db/users", "postgresql://db/users"),
    ],
)
def test_passwords_are_redacted(url, expected):
    assert redact_url(url) == expected


def test_redacted_config_hides_the_password():
    config = Settings(database_url="postgresql://app:s3cret@db/users").redacted()
    assert "s3cret" not in str(config)


def _readme_configuration_table() -> dict[str, str]:
    """`variable` → default, as the README's Configuration table gives them."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", readme.split("## Configuration", 1)[1], re.M)
    return {env: default.strip() for env, default in rows}


# Read by the test suite, not by the service; the README names them below its table.
TEST_ONLY = {"DATASVC_TEST_DATABASE_URL", "DATASVC_TEST_DATA_DIR"}
VARIABLE = re.compile(r"\bDATASVC_[A-Z][A-Z_]*[A-Z]\b")


def test_every_variable_the_package_or_the_readme_names_is_a_declared_setting():
    """No setting read or documented beside `Settings`: each one the code or the README names is declared."""
    declared = {spec.env for spec in FIELDS}
    code = "\n".join(p.read_text() for p in (PROJECT_ROOT / "datasvc").rglob("*.py"))
    assert set(VARIABLE.findall(code)) <= declared, set(VARIABLE.findall(code)) - declared
    named = set(VARIABLE.findall((PROJECT_ROOT / "README.md").read_text())) - TEST_ONLY
    assert named <= declared, named - declared


def test_the_readme_configuration_table_is_the_declared_settings_in_order():
    table = _readme_configuration_table()
    assert list(table) == [spec.env for spec in FIELDS]


@pytest.mark.parametrize("spec", [s for s in FIELDS if not isinstance(s.default, Path)], ids=lambda s: s.env)
def test_the_readme_gives_each_setting_its_declared_default(spec):
    documented = _readme_configuration_table()[spec.env]
    if spec.default is None or spec.default == "":
        assert documented.startswith(("unset", "random")), documented
    elif isinstance(spec.default, bool):
        assert documented == str(spec.default).lower()
    else:
        assert documented == str(spec.default)


def test_an_unknown_log_level_names_the_variable_and_the_choices():
    with pytest.raises(
        SettingsError, match=r"DATASVC_LOG_LEVEL='verbose': must be debug, info, warning or error"
    ):
        Settings.from_env({"DATASVC_LOG_LEVEL": "verbose"})


def test_redacted_config_hides_token_hashes():
    digest = "a" * 64
    config = Settings(auth_tokens=f"billing users:read {digest};login users:read {'b' * 64}").redacted()
    assert digest not in str(config)
    assert config["auth_tokens"] == "*** (2 entries)"


def test_replica_urls_are_a_comma_list_with_passwords_redacted():
    settings = Settings.from_env(
        {
            "DATASVC_REPLICA_URLS": "postgresql://ro:pw1@a/db, postgresql://ro:pw2@b/db",
            "DATASVC_REPLICA_MAX_LAG": "0.5",
        }
    )
    assert settings.replicas == ("postgresql://ro:pw1@a/db", "postgresql://ro:pw2@b/db")
    assert settings.replica_max_lag == 0.5
    assert settings.redacted()["replica_urls"] == "postgresql://ro:***@a/db,postgresql://ro:***@b/db"
    assert Settings.from_env({}).replicas == ()


@pytest.mark.parametrize("raw", ["standby:5432", "postgresql://a/db,,postgresql://b/db", "mysql://a/db"])
def test_a_replica_url_list_that_is_not_urls_names_the_variable(raw):
    with pytest.raises(SettingsError, match=r"DATASVC_REPLICA_URLS=.*postgresql:// URLs"):
        Settings.from_env({"DATASVC_REPLICA_URLS": raw})
