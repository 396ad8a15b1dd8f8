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
        (
            {"DATASVC_POOL_MIN": "5", "DATASVC_POOL_MAX": "2"},
            "DATASVC_POOL_MIN=5 is more than DATASVC_POOL_MAX=2",
        ),
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
    with pytest.raises(SettingsError, match=r"DATASVC_REPLICA_URLS: entry .*postgresql:// URLs"):
        Settings.from_env({"DATASVC_REPLICA_URLS": raw})


# -- issue 22: a configuration the service cannot use is refused at start, every problem at once -----


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("garbage", "must be a URL like postgresql://"),
        ("mysql://app:s3cret@db/users", "scheme 'mysql' is not supported"),
        ("postgresql://app:s3cret@db:99999/users", "port must be a number, 1-65535"),
        ("postgresql://app:s3cret@db:0/users", "port must be a number, 1-65535"),
        ("postgresql://app:s3cret@db:port/users", "port must be a number, 1-65535"),
        ("postgresql://app:s3cret@:5432/users", "has a port but no host"),
        ("app:s3cret@db://x", "scheme is not supported"),
    ],
    ids=["garbage", "scheme", "port-high", "port-zero", "port-word", "no-host", "odd-scheme"],
)
def test_a_database_url_that_cannot_work_names_the_variable_never_the_password(url, why):
    with pytest.raises(SettingsError, match=f"^DATABASE_URL: {why}") as raised:
        Settings.from_env({"DATABASE_URL": url})
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db:5432/users",
        "postgres://db/users",
        "postgresql:///users?host=/var/run/postgresql",
        "postgresql://[::1]:5432/users",
        "postgresql://app@db1:5432,db2:5433/users?target_session_attrs=read-write",
    ],
    ids=["plain", "postgres-scheme", "socket", "ipv6", "multi-host"],
)
def test_every_libpq_url_form_is_accepted(url):
    assert Settings.from_env({"DATABASE_URL": url}).database_url == url


def test_a_bad_replica_url_names_its_entry_never_the_password():
    with pytest.raises(SettingsError, match="DATASVC_REPLICA_URLS: entry 2 port must be") as raised:
        Settings.from_env(
            {"DATASVC_REPLICA_URLS": "postgresql://ro:pw1@a/db,postgresql://ro:s3cret@b:70000/db"}
        )
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize("raw", ["0", "65536", "99999", "http"])
@pytest.mark.parametrize("variable", ["DATASVC_PORT", "DATASVC_EMBEDDED_PORT"])
def test_ports_are_1_to_65535(variable, raw):
    with pytest.raises(SettingsError, match=f"{variable}=.*must be .*1-65535|{variable}=.*whole number"):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize("raw", ["inf", "nan", "-inf", "1e9", "86401"])
@pytest.mark.parametrize("variable", ["DATASVC_STATEMENT_TIMEOUT", "DATASVC_DRAIN_SECONDS"])
def test_durations_are_finite_and_at_most_a_day(variable, raw):
    with pytest.raises(SettingsError, match=f"{variable}=.*finite number of seconds, at most 86400"):
        Settings.from_env({variable: raw})


def test_a_count_that_is_not_a_whole_number_says_so():
    with pytest.raises(SettingsError, match=r"^DATASVC_POOL_MAX='abc': must be a whole number$"):
        Settings.from_env({"DATASVC_POOL_MAX": "abc"})


def test_every_problem_is_reported_at_once():
    env = {
        "DATABASE_URL": "garbage",
        "DATASVC_PORT": "99999",
        "DATASVC_STATEMENT_TIMEOUT": "inf",
        "DATASVC_POOL_MAX": "abc",
        "DATASVC_POOL_MIN": "20",
    }
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    lines = str(raised.value).splitlines()
    assert [line.split(":")[0].split("=")[0] for line in lines] == [
        "DATABASE_URL",
        "DATASVC_POOL_MAX",
        "DATASVC_STATEMENT_TIMEOUT",
        "DATASVC_PORT",
    ]


def test_pool_min_above_the_default_max_names_both_values():
    with pytest.raises(SettingsError, match=r"^DATASVC_POOL_MIN=20 is more than DATASVC_POOL_MAX=10"):
        Settings.from_env({"DATASVC_POOL_MIN": "20"})


TRACING_ON = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "8"},
            r"^OTEL_BSP_MAX_EXPORT_BATCH_SIZE=512 is more than OTEL_BSP_MAX_QUEUE_SIZE=8: a batch is taken",
        ),
        ({"OTEL_BSP_SCHEDULE_DELAY": "0"}, r"^OTEL_BSP_SCHEDULE_DELAY='0': must be a whole number above 0$"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, r"^OTEL_BSP_MAX_QUEUE_SIZE='lots': must be a whole number"),
    ],
    ids=["batch-above-queue", "zero-delay", "not-a-number"],
)
def test_a_batch_processor_variable_the_sdk_would_refuse_is_one_line_at_start_up(env, message):
    """The SDK reads ``OTEL_BSP_*`` in each worker and refuses these with a traceback; we say it first."""
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**TRACING_ON, **env})


def test_batch_processor_variables_are_not_checked_with_tracing_off():
    assert not Settings.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "8"}).tracing
    small = {"OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4"}
    assert Settings.from_env({**TRACING_ON, **small}).tracing
