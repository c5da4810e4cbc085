from pathlib import Path

import pytest
from pydantic import ValidationError

from pipesentinel.settings import DEVELOPMENT_DEVICE_SECRET, Environment, Settings


def test_defaults_are_the_embedded_development_setup() -> None:
    settings = Settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.broker.url is None
    assert settings.storage.backend == "sqlite"


def test_environment_variables_override_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPESENTINEL_STORAGE__BACKEND", "influxdb")
    monkeypatch.setenv("PIPESENTINEL_INGEST__BATCH_MAX_MESSAGES", "7")
    settings = Settings()
    assert settings.storage.backend == "influxdb"
    assert settings.ingest.batch_max_messages == 7


def test_toml_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pipesentinel.toml"
    config.write_text('[broker]\nurl = "mqtt://127.0.0.1:1883"\n')
    monkeypatch.setenv("PIPESENTINEL_CONFIG", str(config))
    assert Settings().broker.url == "mqtt://127.0.0.1:1883"


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ValidationError, match="device_secret"):
        Settings(environment=Environment.PRODUCTION, broker={"url": "mqtt://127.0.0.1:1883"})


def test_production_refuses_the_embedded_broker() -> None:
    with pytest.raises(ValidationError, match=r"broker\.url"):
        Settings(environment=Environment.PRODUCTION, device_secret="a-real-secret-from-a-vault")


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        Settings(ingest={"batch_size": 3})


def test_placeholder_secret_is_the_documented_one() -> None:
    assert Settings().device_secret.get_secret_value() == DEVELOPMENT_DEVICE_SECRET
