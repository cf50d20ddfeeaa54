"""Download U-Sticker from its Hugging Face dataset repository: resumable, hash-checked, with progress.

The file list comes from the Hub's tree API; LFS files are checked against their sha256, the others
against their git blob id. A partial file (``.part``) is resumed with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
from tqdm import tqdm

DEFAULT_ENDPOINT = "https://huggingface.co"
USTICKER_REPO = "metchee/u-sticker"


class DownloadError(RuntimeError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # LFS files
    git_oid: str | None  # plain git files: sha1 of "blob <size>\0<bytes>"


def list_files(client: httpx.Client, endpoint: str, repo: str, revision: str = "main") -> list[RemoteFile]:
    url = f"{endpoint}/api/datasets/{repo}/tree/{revision}"
    response = client.get(url, params={"recursive": "true"})
    response.raise_for_status()
    files = []
    for entry in response.json():
        if entry.get("type") != "file":
            continue
        lfs = entry.get("lfs") or {}
        files.append(RemoteFile(entry["path"], int(lfs.get("size", entry.get("size", 0))),
                                lfs.get("oid") or lfs.get("sha256"), None if lfs else entry.get("oid")))
    return files


def safe_target(dest: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", "") for p in parts) or PurePosixPath(relative).is_absolute():
        raise DownloadError(f"refusing a path outside the destination: {relative!r}")
    return dest.joinpath(*parts)


def _matches(path: Path, remote: RemoteFile) -> bool:
    if remote.sha256:
        digest = hashlib.sha256()
    elif remote.git_oid:
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"blob {path.stat().st_size}\0".encode())
    else:
        return path.stat().st_size == remote.size
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == (remote.sha256 or remote.git_oid)


def fetch_resumable(client: httpx.Client, url: str, target: Path, size: int,
                    check: Callable[[httpx.Response], None], counts: dict, bar) -> Path:
    """Download `url` into `target`.part, going on from what an earlier attempt left there (an HTTP
    Range request); returns the part file, for the caller to verify and rename. `check` raises on a
    response that is neither 200 nor 206."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    with client.stream("GET", url, headers={"Range": f"bytes={have}-"} if have else {}) as response:
        if response.status_code == 416 and have == size:
            return part  # the part is already whole
        check(response)
        if have and response.status_code != 206:  # the server ignored the range: start over
            have = 0
        if have:
            counts["resumed"] += 1
        bar.update(have)
        with part.open("ab" if have else "wb") as out:
            for chunk in response.iter_bytes(1 << 16):
                out.write(chunk)
                counts["bytes"] += len(chunk)
                bar.update(len(chunk))
    return part


def download_usticker(
    dest: Path,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    repo: str = USTICKER_REPO,
    revision: str = "main",
    include: Callable[[str], bool] | None = None,
    token: str | None = None,
    progress: bool = True,
    client: httpx.Client | None = None,
) -> dict[str, int]:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    own_client = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30, read=120), headers=headers)
    counts = {"files": 0, "downloaded": 0, "skipped": 0, "resumed": 0, "bytes": 0}
    try:
        files = [f for f in list_files(client, endpoint, repo, revision) if include is None or include(f.path)]
        bar = tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True, disable=not progress,
                   desc="download")
        with bar:
            for remote in files:
                counts["files"] += 1
                target = safe_target(dest, remote.path)
                if target.exists() and target.stat().st_size == remote.size and _matches(target, remote):
                    counts["skipped"] += 1
                    bar.update(remote.size)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                url = f"{endpoint}/datasets/{repo}/resolve/{revision}/{remote.path}"

                def check(response: httpx.Response, url: str = url, path: str = remote.path) -> None:
                    if response.status_code not in (200, 206):
                        raise DownloadError(f"{path}: HTTP {response.status_code} from {url}")

                part = fetch_resumable(client, url, target, remote.size, check, counts, bar)
                if part.stat().st_size != remote.size or not _matches(part, remote):
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"{remote.path}: size or hash does not match the repository; "
                                        "the partial file was removed, run the command again")
                part.replace(target)
                counts["downloaded"] += 1
    finally:
        if own_client:
            client.close()
    return counts
