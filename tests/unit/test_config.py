"""Settings resolution: flags, profiles, environment, pyproject.toml, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.exceptions import ConfigError
from framework.settings import Settings, find_pyproject, load_settings

PYPROJECT = """
[tool.framework]
backend = "memory://"
http_port = 9000

[tool.framework.env.staging]
backend = "amqp://guest:guest@127.0.0.1:5672/"
grace = 5
"""


@pytest.fixture
def pyproject(tmp_path: Path) -> Path:
    """A pyproject.toml with a default table and a staging profile."""
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)
    return path


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    """With no pyproject table, no variables and no flags, the defaults apply."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n')
    settings = load_settings(pyproject=path, environ={})
    assert settings == Settings()
    assert settings.backend == "sqlite:///.framework/{app}.db"
    assert settings.backend_for("shop") == "sqlite:///.framework/shop.db"


def test_pyproject_table_sets_values(pyproject: Path) -> None:
    """Values in [tool.framework] replace the defaults."""
    settings = load_settings(pyproject=pyproject, environ={})
    assert settings.http_port == 9000
    assert settings.backend == "memory://"


def test_environment_backend_beats_pyproject(pyproject: Path) -> None:
    """FRAMEWORK_BACKEND overrides the pyproject table."""
    settings = load_settings(pyproject=pyproject, environ={"FRAMEWORK_BACKEND": "aws://eu-west-1"})
    assert settings.backend == "aws://eu-west-1"


def test_profile_beats_environment(pyproject: Path) -> None:
    """A profile chosen with --env overrides FRAMEWORK_BACKEND and the table."""
    settings = load_settings(
        env="staging", pyproject=pyproject, environ={"FRAMEWORK_BACKEND": "aws://eu-west-1"}
    )
    assert settings.backend.startswith("amqp://")
    assert settings.grace == 5
    assert settings.http_port == 9000


def test_profile_chosen_by_environment_variable(pyproject: Path) -> None:
    """FRAMEWORK_ENV selects a profile when --env is not given."""
    settings = load_settings(pyproject=pyproject, environ={"FRAMEWORK_ENV": "staging"})
    assert settings.backend.startswith("amqp://")


def test_flags_beat_everything(pyproject: Path) -> None:
    """Command-line overrides win; None overrides are ignored."""
    settings = load_settings(
        env="staging",
        pyproject=pyproject,
        environ={"FRAMEWORK_BACKEND": "aws://eu-west-1"},
        overrides={"backend": "memory://", "http_port": None},
    )
    assert settings.backend == "memory://"
    assert settings.http_port == 9000


def test_unknown_profile_lists_known_ones(pyproject: Path) -> None:
    """An unknown profile fails naming the file and the profiles it has."""
    with pytest.raises(ConfigError, match=r"no profile 'prod'.*\(profiles: staging\)"):
        load_settings(env="prod", pyproject=pyproject, environ={})


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    """A misspelt setting fails naming it and the known ones."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.framework]\nbackend_url = "memory://"\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) backend_url \(known: backend"):
        load_settings(pyproject=path, environ={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    """A pyproject.toml that does not parse fails with a ConfigError naming it."""
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.framework\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(pyproject=path, environ={})


def test_find_pyproject_walks_up(pyproject: Path) -> None:
    """The nearest pyproject.toml above the start folder is found."""
    nested = pyproject.parent / "a" / "b"
    nested.mkdir(parents=True)
    assert find_pyproject(nested) == pyproject
