"""deploy/: what can be checked without a container runtime. The Dockerfile installs with the
Makefile's commands, the build context leaves the virtualenv out, compose.yaml has the services
docs/deployment.md describes, and nginx itself accepts deploy/nginx.conf (`nginx -t`)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX = "/usr/sbin/nginx"  # Debian's, installed by scripts/ensure-system-packages.sh


def makefile_variables(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)\s*:?=\s*(.*)$", text, flags=re.MULTILINE))


def makefile_pip_commands() -> list[list[str]]:
    """The pip commands of `make install` (the $(STAMP) recipe), as the shell would run them
    in an environment whose `python` is the virtualenv's."""
    text = (ROOT / "Makefile").read_text()
    variables = makefile_variables(text)
    recipe = text.split("$(STAMP): pyproject.toml $(LOCK)\n", 1)[1].split("\n\n", 1)[0]
    commands = []
    for line in recipe.splitlines():
        line = line.strip()
        if "-m pip " not in line:
            continue
        line = line.replace("$(BIN)/python", "python").replace("$(PIP_VERSION)", "$PIP_VERSION")
        line = line.replace("$(UNCHECKED)", variables["UNCHECKED"]).replace("$(LOCK)", "LOCK")
        commands.append(shlex.split(line.replace("$$", "$").replace("LOCK", variables["LOCK"])))
    return commands


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's lines, each continued line joined to its instruction."""
    return re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text()).splitlines()


def run_instructions() -> list[str]:
    return [line[len("RUN ") :] for line in dockerfile_instructions() if line.startswith("RUN ")]


def dockerfile_commands() -> list[str]:
    """Every shell command of the Dockerfile's RUN instructions, in order."""
    return [part.strip() for run in run_instructions() for part in run.split("&&")]


def development_only(command: list[str]) -> list[str]:
    """`make install` is quiet and installs aiservice editable (a checkout to work in): the
    image installs the same package, built."""
    command = [token for token in command if token != "--quiet"]
    if command[-2:] == ["-e", "."]:
        command = [*command[:-2], "."]
    return command


def test_the_dockerfile_installs_with_the_makefiles_commands() -> None:
    ours = [shlex.split(c) for c in dockerfile_commands() if "-m pip " in c]
    assert [development_only(c) for c in ours] == [
        development_only(c) for c in makefile_pip_commands()
    ]
    # The same two steps the README and docs/deployment.md give.
    flat = [" ".join(development_only(c)) for c in ours]
    assert "python -m pip install --require-hashes --no-deps -r requirements.lock" in flat
    assert "python -m pip install --no-deps ." in flat
    # The pinned pip's version is read from the lock as the Makefile reads it.
    sed = re.search(r"\$\(shell (sed .*) \$\(LOCK\)\)", (ROOT / "Makefile").read_text())
    assert sed is not None
    (read_version,) = [c for c in dockerfile_commands() if c.startswith("PIP_VERSION=")]
    assert f"$({sed.group(1)} requirements.lock)" in read_version
    shown = subprocess.run(
        ["sh", "-c", f'{read_version}; echo "$PIP_VERSION"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert re.search(rf"^pip=={re.escape(shown.stdout.strip())} ", lock_text(), flags=re.M)


def test_every_run_instruction_is_valid_shell() -> None:
    runs = run_instructions()
    assert len(runs) >= 6
    for run in runs:
        checked = subprocess.run(["sh", "-n", "-c", run], capture_output=True, text=True)
        assert checked.returncode == 0, (run, checked.stderr)


def lock_text() -> str:
    return (ROOT / "requirements.lock").read_text()


def test_the_image_runs_as_a_user_with_a_health_check_and_serves_on_every_interface() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.MULTILINE)
    assert "build-essential" in text  # llama.cpp is compiled while llama-cpp-python installs
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert any(re.match(r"HEALTHCHECK .*/health", line) for line in dockerfile_instructions())
    assert text.rstrip().splitlines()[-1] == 'CMD ["aiservice", "serve", "--host", "0.0.0.0"]'


def test_the_build_context_leaves_out_the_virtualenv_and_the_caches() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "**/__pycache__", ".pytest_cache", ".ruff_cache"} <= patterns
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    for source in " ".join(copied).split():
        assert (ROOT / source).exists(), source
        assert source not in patterns, f"{source} is copied but left out of the context"


def test_compose_has_the_services_and_their_wiring() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "api", "worker", "nginx"}
    assert services["api"]["command"][:2] == ["aiservice", "serve"]
    assert "--no-worker" in services["api"]["command"]
    assert services["worker"]["command"] == ["aiservice", "worker"]
    for name in ("api", "worker"):
        assert services[name]["deploy"]["replicas"] == 2
        environment = services[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "AISERVICE_MASTER_KEY"} <= environment.keys()
        assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert set(services[name]["depends_on"]) == {"postgres", "redis"}
    for name in ("postgres", "redis", "api", "nginx"):
        assert services[name]["healthcheck"]["test"], name
    assert services["worker"]["healthcheck"] == {"disable": True}  # no HTTP in a worker
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert "postgres-data" in compose["volumes"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
    upstreams = re.findall(r"^\s*server (\S+?):(\d+)\b", (DEPLOY / "nginx.conf").read_text(), re.M)
    assert upstreams == [("api", "5000")]  # every replica of the api service


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    """`nginx -t` on a copy whose upstream is an address (nginx resolves names at start, and
    `api` only resolves inside compose), under a prefix and pid file of the test's own."""
    nginx = shutil.which("nginx") or NGINX
    if not Path(nginx).is_file():
        pytest.fail(f"{NGINX} missing: `make browser` installs Debian's nginx (as root)")
    text = (DEPLOY / "nginx.conf").read_text()
    adapted = text.replace("server api:5000", "server 127.0.0.1:5000")
    assert adapted != text
    (tmp_path / "nginx.conf").write_text(adapted)
    prefix, pid = ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], tmp_path / "nginx.pid"
    checked = subprocess.run(
        [nginx, "-t", *prefix, "-e", "stderr", "-g", f"pid {pid};"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_nginx_passes_streams_uploads_and_the_client_address() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    directives = {
        line.strip().rstrip(";")
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    for directive in (
        "proxy_buffering off",
        "proxy_read_timeout 600s",
        "client_max_body_size 210m",  # 200 MB files and their multipart framing
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_set_header X-Forwarded-Proto $scheme",
        "location = /metrics {",
        "deny all",
    ):
        assert directive in directives, directive
