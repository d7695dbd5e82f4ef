"""`mlassets data fetch`: verified copies from a local folder, clear failures offline or on a bad checksum."""

import shutil
import urllib.error
from pathlib import Path

import pytest

from mlassets import cli
from mlassets.datasets import fetch
from mlassets.datasets.fetch import DATASETS, FetchError, copy_local, fetch_official, sha256_of


def test_copy_from_local_folder_verifies_sha256(data_dir: Path, tmp_path: Path) -> None:
    copied = copy_local(data_dir, ["weather", "susy"], tmp_path, log=lambda _: None)
    assert copied == 5
    assert sha256_of(tmp_path / "weather/observed_1.csv") == DATASETS["weather"].downloads[0].sha256
    assert copy_local(data_dir, ["weather"], tmp_path, log=lambda _: None) == 0  # second run: nothing to copy


def test_tampered_source_is_refused(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(data_dir / "weather", source / "weather")
    shutil.copy(data_dir / "SHA256SUMS", source / "SHA256SUMS")
    with open(source / "weather/test_output_1.csv", "a") as f:
        f.write("20210101,50\n")
    with pytest.raises(FetchError, match=r"test_output_1.csv: sha256 does not match"):
        copy_local(source, ["weather"], tmp_path / "dest", log=lambda _: None)


def test_offline_download_says_how_to_copy_instead(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", offline)
    with pytest.raises(FetchError, match=r"cannot download https://raw.githubusercontent.com/.*--from DIR"):
        fetch_official(["weather"], tmp_path, log=lambda _: None)


def test_bad_checksum_download_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Response:
        def __init__(self) -> None:
            self.data = [b"not the real file"]

        def read(self, n: int = -1) -> bytes:
            return self.data.pop() if self.data else b""

        def __enter__(self) -> "Response":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch_official(["weather"], tmp_path, log=lambda _: None)
    assert not (tmp_path / "weather" / "observed_1.csv").exists()


def test_cli_offline_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(fetch.urllib.request, "urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    assert cli.main(["data", "fetch", "weather", "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlassets: cannot download") and "Traceback" not in err


def test_cli_copy(data_dir: Path, tmp_path: Path) -> None:
    assert cli.main(["data", "fetch", "cifar10", "--from", str(data_dir), "--dest", str(tmp_path)]) == 0
    assert (tmp_path / "cifar10/cifar-10-batches-bin/test_batch.bin").stat().st_size == 30_730_000
