"""`sticktionary export pull`: a researcher's copy of an export, brought up to date.

Fetches the manifest (If-None-Match: nothing to do when `latest` has not moved), then each file
the local copy lacks: a file whose sha256 is already in an earlier local version is linked, not
downloaded; a partial download (`.part`) resumes with a Range request; every file is checked
against the manifest's sha256, and a mismatch removes it and stops with an error. The manifest is
written last, so a local version with a manifest is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
from tqdm import tqdm

from storage.download import fetch_resumable, safe_target
from storage.export_files import MANIFEST, is_version_name, point_latest, sha256_file

STATE = ".pull-state.json"


class PullError(RuntimeError):
    pass


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code == 401:
        raise PullError(f"the server refused the token ({what}): check --token")
    if response.status_code == 404:
        raise PullError(f"{what}: not found on the server")
    if response.status_code >= 400:
        raise PullError(f"{what}: HTTP {response.status_code}")


def _known_files(dest: Path, skip: str) -> dict[str, Path]:
    """sha256 -> a verified local copy, from the other complete local versions."""
    known = {}
    for folder in sorted(p for p in dest.iterdir() if p.is_dir() and is_version_name(p.name) and p.name != skip):
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            continue
        for entry in json.loads(manifest_path.read_text(encoding="utf-8"))["files"]:
            path = folder / entry["path"]
            if path.is_file() and path.stat().st_size == entry["bytes"]:
                known.setdefault(entry["sha256"], path)
    return known


def pull(url: str, token: str, dest: Path, *, version: str = "latest", progress: bool = False,
         client: httpx.Client | None = None) -> dict:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = url.rstrip("/")
    state_path = dest / STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    own_client = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(30, read=300), follow_redirects=True)
    client.headers["Authorization"] = f"Bearer {token}"
    counts = {"version": None, "files": 0, "downloaded": 0, "resumed": 0, "linked": 0, "unchanged": 0, "bytes": 0}
    try:
        headers = {}
        previous = state.get(version)
        if previous and (dest / previous["version"] / MANIFEST).is_file():
            headers["If-None-Match"] = previous["etag"]
        response = client.get(f"{base}/exports/{version}/{MANIFEST}", headers=headers)
        if response.status_code == 304:
            counts.update(version=previous["version"], up_to_date=True)
            return counts
        _check(response, f"export {version}")
        manifest = response.json()
        target_version = manifest["version"]
        if not is_version_name(target_version):
            raise PullError(f"the server sent a strange version name: {target_version!r}")
        counts["version"] = target_version
        folder = dest / target_version
        folder.mkdir(exist_ok=True)
        known = _known_files(dest, skip=target_version)
        total = sum(entry["bytes"] for entry in manifest["files"])
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress, desc=target_version) as bar:
            for entry in manifest["files"]:
                counts["files"] += 1
                target = safe_target(folder, entry["path"])
                if target.is_file() and target.stat().st_size == entry["bytes"] and \
                        sha256_file(target) == entry["sha256"]:
                    counts["unchanged"] += 1
                    bar.update(entry["bytes"])
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if entry["sha256"] in known:
                    _link_or_copy(known[entry["sha256"]], target)
                    counts["linked"] += 1
                    bar.update(entry["bytes"])
                    continue
                _download(client, f"{base}/exports/{target_version}/{entry['path']}", target, entry, counts, bar)
        (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if version == "latest":
            point_latest(dest, target_version)
        state[version] = {"version": target_version, "etag": response.headers.get("ETag", "")}
        state_path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        counts["up_to_date"] = False
        return counts
    except httpx.HTTPError as error:
        raise PullError(f"cannot reach {base}: {error}; run the command again to resume") from None
    finally:
        if own_client:
            client.close()


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _download(client: httpx.Client, url: str, target: Path, entry: dict, counts: dict, bar) -> None:
    part = fetch_resumable(client, url, target, entry["bytes"], lambda response: _check(response, entry["path"]),
                           counts, bar)
    if part.stat().st_size != entry["bytes"] or sha256_file(part) != entry["sha256"]:
        part.unlink(missing_ok=True)
        raise PullError(f"{entry['path']}: sha256 does not match the manifest; the corrupted file was removed, "
                        "run the command again")
    part.replace(target)
    counts["downloaded"] += 1


__all__ = ["pull", "PullError"]
