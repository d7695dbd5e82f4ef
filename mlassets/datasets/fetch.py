"""Official dataset downloads with pinned sha256, or a verified copy from a local folder."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

WEATHER_BASE = (
    "https://raw.githubusercontent.com/AdroitAnandAI/Scalable-ML-with-Spark/"
    "3e4d583bc211ad40ddfe29402a6c952ef8abef07/"
)


class FetchError(RuntimeError):
    """A dataset could not be downloaded, verified or copied; the message says which and why."""


@dataclass(frozen=True)
class Download:
    """One official file: its URL, sha256, and where (or how) it lands under the dataset folder."""

    url: str
    sha256: str
    target: str
    extract: Callable[[Path, Path], None] | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset's folder name under the data dir and its official downloads."""

    name: str
    downloads: tuple[Download, ...] = field(default_factory=tuple)


def _extract_members(prefix_in_archive: str, into: str) -> Callable[[Path, Path], None]:
    """An extractor copying the archive members below `prefix_in_archive` to `<dest>/<into>`."""

    def extract(archive: Path, dest: Path) -> None:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                try:
                    index = next(i for i in range(len(parts)) if "/".join(parts[i:]).startswith(prefix_in_archive))
                except StopIteration:
                    continue
                relative = PurePosixPath(*parts[index:]).relative_to(prefix_in_archive)
                if not member.isfile() or ".." in relative.parts:
                    continue
                out = dest / into / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(out, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)

    return extract


DATASETS: dict[str, Dataset] = {
    "cifar10": Dataset("cifar10", (
        # sha256 as published in tensorflow/datasets url_checksums/cifar10.txt
        Download("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                 "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                 "cifar-10-binary.tar.gz", _extract_members("cifar-10-batches-bin", "cifar-10-batches-bin")),
    )),
    "susy": Dataset("susy", (
        Download("https://archive.ics.uci.edu/ml/machine-learning-databases/00279/SUSY.csv.gz",
                 "be56cb5598da8ece4b13912230ee713bab8b3431a7d118e0054ffdf3a2f25664", "SUSY.csv.gz"),
    )),
    "weather": Dataset("weather", tuple(
        Download(WEATHER_BASE + name, sha, name) for name, sha in (
            ("observed_1.csv", "6eeee273ac56404516e4216c8291f4a175003ef0a615861f6dfcbb9a598b699b"),
            ("test_input_1.csv", "bcc16d609c59c17df24f5aae4e42c9027078b573b00d762e24ce8d0484415a23"),
            ("test_output_1.csv", "02198699a184bd653c5a36856b7b2c1e833740d75c21eca92cd69fa163dc111a"),
            ("forecasted_1.csv", "d2911219e7e2637d415e27e73d35c387128323fe9ef4fd5f869bf9a4670b15f1"),
        )
    )),
    "fruits360": Dataset("fruits360", (
        # sha256 as published in tensorflow/datasets url_checksums/fruits360.txt
        Download("https://github.com/Horea94/Fruit-Images-Dataset/archive/"
                 "b6960fc0287be349c222c3dbdd2624958c902431.tar.gz",
                 "01b981d15f3fdf304270ec9c2eff425820bb39d7a7d82b24704c4e10c13da5c4",
                 "fruits-360.tar.gz", _extract_members("Test", "Test")),
    )),
}


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, out: Path, timeout_s: float = 60.0) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(out, "wb") as dst:
            shutil.copyfileobj(response, dst, 1 << 20)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FetchError(
            f"cannot download {url}: {exc}. Without internet access, copy a local folder instead: "
            "`mlassets data fetch --from DIR`"
        ) from exc


def fetch_official(names: Iterable[str], dest: Path, log: Callable[[str], None] = print) -> None:
    """Download each named dataset into dest/<name>, verifying every file's pinned sha256."""
    for name in names:
        dataset = DATASETS[name]
        folder = dest / dataset.name
        folder.mkdir(parents=True, exist_ok=True)
        for item in dataset.downloads:
            with tempfile.TemporaryDirectory(dir=dest) as tmp:
                part = Path(tmp) / item.target
                log(f"downloading {item.url}")
                _download(item.url, part)
                actual = sha256_of(part)
                if actual != item.sha256:
                    raise FetchError(f"{item.url}: sha256 {actual} does not match the pinned {item.sha256}")
                if item.extract is not None:
                    item.extract(part, folder)
                else:
                    shutil.move(part, folder / item.target)
            log(f"verified {name}: {item.target}")


def read_sha256sums(path: Path) -> dict[str, str]:
    """A SHA256SUMS file as {relative path: sha256}."""
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest
    return sums


def copy_local(source: Path, names: Iterable[str], dest: Path, log: Callable[[str], None] = print) -> int:
    """Copy dataset folders from source into dest, verifying files listed in source/SHA256SUMS; returns files copied."""
    sums_file = source / "SHA256SUMS"
    sums = read_sha256sums(sums_file) if sums_file.is_file() else {}
    copied = 0
    for name in names:
        folder = source / name
        if not folder.is_dir():
            raise FetchError(f"{folder} does not exist: {source} has no {name} dataset")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(source).as_posix()
            expected = sums.get(relative)
            if expected is not None and sha256_of(path) != expected:
                raise FetchError(f"{path}: sha256 does not match {sums_file}")
            out = dest / relative
            if out.resolve() == path.resolve():
                continue
            if out.exists() and out.stat().st_size == path.stat().st_size and (
                expected is None or sha256_of(out) == expected
            ):
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
            copied += 1
        log(f"copied {name} from {folder}" + (" (sha256 verified)" if sums else " (no SHA256SUMS to verify)"))
    return copied
