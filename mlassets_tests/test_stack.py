"""The local stack command: up is idempotent, status reports every server, settings come from the env."""

from pathlib import Path

import pytest

from mlassets import cli
from mlassets.stack import LocalStack, StackSettings
from mlassets.stack.process import StackError, require_tool


def test_up_while_running_is_a_no_op(stack: StackSettings) -> None:
    local = LocalStack(stack)
    assert local.up() == []
    statuses = {s.name: s for s in local.status()}
    assert set(statuses) == {"kafka", "ferretdb", "s3"}
    assert all(s.running for s in statuses.values())
    assert statuses["kafka"].address == stack.kafka_bootstrap
    assert Path(statuses["ferretdb"].log_file).is_file()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLASSETS_STACK_KAFKA_PORT", "29092")
    monkeypatch.setenv("MLASSETS_STACK_RUN_DIR", str(tmp_path))
    settings = StackSettings.from_env()
    assert settings.kafka_bootstrap == "127.0.0.1:29092"
    assert settings.run_dir == tmp_path
    monkeypatch.setenv("MLASSETS_STACK_MONGO_PORT", "many")
    with pytest.raises(ValueError, match="MLASSETS_STACK_MONGO_PORT='many'"):
        StackSettings.from_env()


def test_missing_tool_says_how_to_install() -> None:
    with pytest.raises(StackError, match="`no-such-tool` is required but not on PATH. Install it: apt-get"):
        require_tool("no-such-tool", "apt-get install no-such-tool")


def test_status_of_a_stopped_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLASSETS_STACK_RUN_DIR", str(tmp_path))
    assert cli.main(["stack", "status"]) == 3
    assert capsys.readouterr().out.count(" stopped ") == 3


def test_server_that_cannot_start_names_itself_and_its_log(stack: StackSettings, tmp_path: Path) -> None:
    # The test stack's Kafka holds its port: a second Kafka on the same port must fail clearly.
    clash = StackSettings.from_env(run_dir=tmp_path, cache_dir=stack.cache_dir, kafka_port=stack.kafka_port)
    with pytest.raises(StackError, match=f"kafka: port {stack.kafka_port} is already in use"):
        LocalStack(clash).kafka.start()


def test_process_that_dies_at_start_names_its_log(tmp_path: Path) -> None:
    from mlassets.stack.process import ManagedProcess

    proc = ManagedProcess("broken", tmp_path)
    proc.start(["sh", "-c", "echo bad config >&2; exit 3"], cwd=tmp_path)
    with pytest.raises(StackError, match=rf"broken exited during start-up; log: {tmp_path}/broken.log\n(.|\n)*bad config"):
        proc.wait_ready(lambda: False, timeout_s=10)
