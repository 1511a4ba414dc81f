"""deploy/ agrees with the code: metric names, commands, ports, probes; and the tools accept it."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.observe import metrics
from worker.relay.daemon import Stats
from worker.settings import Settings, parse_duration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "webhooks-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "webhooks-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "webhooks-dashboard.json"
SYSTEMD = DEPLOY / "systemd"
KUBERNETES = DEPLOY / "kubernetes"

#: Series Prometheus makes itself for every target.
SYNTHETIC = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def exported_names() -> set[str]:
    """Return every sample name the relay's and the workers' endpoints can expose."""
    registry = CollectorRegistry()
    metrics.DeliveryMetrics(registry)
    registry.register(metrics.ProcessGroupCollector(os.getpid()))
    relay = metrics.relay_registry(
        Stats(), metrics.BacklogCollector(lambda: dict.fromkeys(metrics.BACKLOG_GAUGES, 1.0))
    )
    names: set[str] = set()
    for reg in (registry, relay):
        for family in text_string_to_metric_families(generate_latest(reg).decode()):
            names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, $__rate_interval included
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", expr):
        followed_by = expr[match.end() :].lstrip()
        if followed_by.startswith("(") or match.group() in _KEYWORDS:
            continue  # a function or an operator
        names.add(match.group())
    return names


def rule_expressions(text: str) -> list[str]:
    """Return the `expr:` of each rule (one line, or a `|` block) and `query` in templates."""
    exprs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        found = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not found:
            continue
        indent, value = len(found.group(1)), found.group(2).strip()
        if value in ("|", ">", "|-", ">-"):
            block = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(block)
        exprs.append(value)
    exprs += re.findall(r'query "([^"]+)"', text)
    return exprs


def dashboard_expressions(node: Any) -> Iterator[str]:
    """Yield every `expr` of a Grafana dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


def test_the_promql_reader_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job=~"x|y"}[$__rate_interval])))'
        " / on() group_left sum(b_total offset 1h) > bool 0.5 and absent(up == 1)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def test_every_metric_the_alert_rules_use_is_one_the_code_exports() -> None:
    text = RULES.read_text()
    exprs = rule_expressions(text)
    assert len(exprs) >= text.count("- alert:")
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, "no metric found: the reader is broken"
    assert used - exported_names() - SYNTHETIC == set()


def test_every_metric_the_dashboard_uses_is_one_the_code_exports() -> None:
    exprs = list(dashboard_expressions(json.loads(DASHBOARD.read_text())))
    assert len(exprs) > 10
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - exported_names() - SYNTHETIC == set()


def test_alerts_and_dashboard_cover_every_core_metric() -> None:
    core = {
        "webhooks_events_relayed_total",
        "webhooks_deliveries_created_total",
        "webhooks_attempts_total",
        "webhooks_dead_letters_total",
        "webhooks_attempt_duration_seconds_bucket",
        "webhooks_delivery_latency_seconds_bucket",
        "webhooks_outbox_pending",
        "webhooks_outbox_oldest_age_seconds",
        "webhooks_deliveries_pending",
        "webhooks_dead_letters_current",
        "webhooks_endpoints_disabled",
        "webhooks_endpoints_circuit_open",
    }
    assert core <= exported_names()
    exprs = list(dashboard_expressions(json.loads(DASHBOARD.read_text())))
    assert core <= set().union(*(metric_names(e) for e in exprs))


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"]


promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool is not installed")


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_alerts_fire_as_their_unit_tests_say() -> None:
    assert promtool is not None
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    assert promtool is not None
    exprs = list(dashboard_expressions(json.loads(DASHBOARD.read_text())))
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-rules.json"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- processes: Procfile, systemd, Kubernetes -------------------------------------------


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip():
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def unit(name: str) -> dict[str, list[str]]:
    """Return a systemd unit's keys (repeated keys keep every value)."""
    keys: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return keys


def runs(command: str, process: str) -> bool:
    """Return whether ``command`` is the Procfile's command for ``process``, options aside."""
    expected = procfile()[process]
    return command == expected or command.startswith(expected + " ")


def test_procfile_runs_the_relay_the_workers_and_the_api() -> None:
    assert procfile() == {
        "relay": "webhooks relay",
        "worker": "webhooks worker",
        "api": "webhooks api",
    }


@pytest.mark.parametrize("process", ["relay", "worker", "api"])
def test_systemd_units_run_what_the_procfile_runs_and_stop_cleanly(process: str) -> None:
    keys = unit(f"webhooks-{process}.service")
    (exec_start,) = keys["ExecStart"]
    assert exec_start.startswith("/opt/webhooks/venv/bin/webhooks ")
    assert runs(exec_start.removeprefix("/opt/webhooks/venv/bin/"), process)
    assert keys["EnvironmentFile"] == ["/etc/webhooks/webhooks.env"]
    assert keys["Restart"] == ["on-failure"]
    assert keys["KillSignal"] == ["SIGTERM"]
    # Dramatiq's main process forwards SIGTERM; a second one would kill attempts midway.
    assert keys["KillMode"] == ["mixed"]
    assert keys["NoNewPrivileges"] == ["yes"]
    assert keys["ProtectSystem"] == ["strict"]
    assert "ProcSubset" not in keys  # the process metrics read /proc/stat
    assert "webhooks-migrate.service" in keys["After"][0].split()
    assert f"webhooks-{process}.service" in unit("webhooks-migrate.service")["Before"][0].split()


def test_the_api_unit_leaves_requests_in_flight_their_grace() -> None:
    from worker.api.server import GRACE

    keys = unit("webhooks-api.service")
    (timeout,) = keys["TimeoutStopSec"]
    assert parse_duration(timeout) > GRACE
    # Loopback by default, as `webhooks api` itself: a reverse proxy on the host fronts it.
    assert "--host 127.0.0.1" in keys["ExecStart"][0]


def test_the_worker_unit_gives_the_metric_files_a_directory_of_their_own() -> None:
    keys = unit("webhooks-worker.service")
    assert keys["RuntimeDirectory"] == ["webhooks-worker"]
    assert "PROMETHEUS_MULTIPROC_DIR=%t/webhooks-worker" in keys["Environment"]


systemd_analyze = shutil.which("systemd-analyze")


@pytest.mark.skipif(systemd_analyze is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    assert systemd_analyze is not None
    # verify wants ExecStart to exist and reads the environment files.
    webhooks = Path(sys.executable).with_name("webhooks")
    if not webhooks.exists():
        pytest.skip("the webhooks script is not installed")
    for example in ("webhooks.env.example", "migrate.env.example"):
        shutil.copy(SYSTEMD / example, tmp_path / example.removesuffix(".example"))
    names = []
    for source in sorted(SYSTEMD.glob("*.service")):
        text = source.read_text()
        text = text.replace("/opt/webhooks/venv/bin/webhooks", str(webhooks))
        text = text.replace("/etc/webhooks/", f"{tmp_path}/")
        (tmp_path / source.name).write_text(text)
        names.append(f"./{source.name}")
    done = subprocess.run(
        [systemd_analyze, "verify", *names],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if tmp_path.name in line or "webhooks" in line
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


kubectl = shutil.which("kubectl")


@pytest.mark.skipif(kubectl is None, reason="kubectl is not installed")
def test_kustomize_builds_the_kubernetes_manifests() -> None:
    assert kubectl is not None
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for kind in ("Deployment", "Service", "ServiceMonitor", "Secret", "Job"):
        assert f"kind: {kind}" in done.stdout
    for name in ("webhooks-relay", "webhooks-worker", "webhooks-api", "webhooks-migrate"):
        assert f"name: {name}\n" in done.stdout


def manifests() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    for doc in manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


@pytest.mark.parametrize(
    ("process", "port"),
    [("relay", Settings().relay_metrics_port), ("worker", Settings().metrics_port)],
)
def test_kubernetes_deployments_probe_the_endpoint_the_code_serves(process: str, port: int) -> None:
    deployment = find("Deployment", f"webhooks-{process}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert " ".join(container["command"]).startswith(procfile()[process])
    (declared,) = container["ports"]
    assert declared == {"name": "metrics", "containerPort": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # /readyz may take up to its 3s check deadline; the kubelet's default timeout is 1s.
    assert container["readinessProbe"]["timeoutSeconds"] > 3
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"secretRef": {"name": "webhooks"}} in container["envFrom"]
    config = find("ConfigMap", "webhooks")["data"]
    variable = "WEBHOOKS_RELAY_METRICS_PORT" if process == "relay" else "WEBHOOKS_METRICS_PORT"
    assert config[variable] == str(port)
    service = find("Service", f"webhooks-{process}")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics"}]
    selector = service["spec"]["selector"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_the_api_deployment_serves_and_probes_on_the_port_it_declares() -> None:
    from worker.api.server import GRACE

    deployment = find("Deployment", "webhooks-api")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert runs(" ".join(command), "api")
    # The probes and the Service reach the pod's address, not its loopback.
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["readinessProbe"]["timeoutSeconds"] > 3
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"secretRef": {"name": "webhooks"}} in container["envFrom"]
    assert pod["terminationGracePeriodSeconds"] > GRACE
    service = find("Service", "webhooks-api")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    assert service["spec"].get("clusterIP") != "None"  # it takes traffic, unlike the others


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_pod_runs_the_image_as_its_own_non_root_user() -> None:
    uid, gid = image_user()
    workloads = [doc for doc in manifests() if doc["kind"] in ("Deployment", "Job")]
    assert {w["metadata"]["name"] for w in workloads} == {
        "webhooks-relay",
        "webhooks-worker",
        "webhooks-api",
        "webhooks-migrate",
    }
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            uid,
            gid,
        )
        for container in pod["containers"]:
            assert container["image"] == "webhooks-outbox"
            assert container["command"][0] == image_entrypoint()
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_service_monitor_scrapes_both_services() -> None:
    monitor = find("ServiceMonitor", "webhooks")
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(expression["values"]) == ["webhooks-relay", "webhooks-worker"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_the_rabbitmq_overlay_names_the_broker_and_needs_no_redis() -> None:
    assert kubectl is not None
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES.parent / "kubernetes-rabbitmq")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "WEBHOOKS_BROKER_URL: amqp://" in done.stdout
    assert "REDIS_URL" not in done.stdout
    assert "kind: RabbitmqCluster" in done.stdout


def test_the_rabbitmq_systemd_environment_is_valid_settings() -> None:
    env = {}
    for line in (SYSTEMD / "webhooks-rabbitmq.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env["WEBHOOKS_SECRET_KEY"] = "k" * 32
    settings = Settings.from_env(env)
    assert not settings.broker_is_redis and "REDIS_URL" not in env


# -- the image: Dockerfile and .dockerignore ------------------------------------------------
# No container engine is needed: the file is read as the builder would read it, and hadolint
# (a wheel in the test extra) lints it when installed.

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """Return the Dockerfile's instructions, continuations joined and comments dropped."""
    found, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "a continuation runs off the end"
    return found


def stages() -> dict[str, list[Instruction]]:
    """Return each stage's instructions by stage name, FROM first, in file order."""
    args: dict[str, str] = {}
    named: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for ins in instructions():
        if ins.keyword == "ARG" and current is None:
            name, _, default = ins.args.partition("=")
            args[name] = default
        elif ins.keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ins.args)
            found = re.fullmatch(r"(\S+) AS (\w+)", image, re.IGNORECASE)
            assert found, f"every stage is named: FROM {ins.args}"
            current = named[found.group(2)] = [Instruction("FROM", found.group(1))]
        else:
            assert current is not None, f"{ins.keyword} before the first FROM"
            current.append(ins)
    return named


def last(stage: list[Instruction], keyword: str) -> str:
    values = [ins.args for ins in stage if ins.keyword == keyword]
    assert values, f"no {keyword}"
    return values[-1]


def image_user() -> tuple[int, int]:
    """Return the uid and gid the image runs as."""
    runtime = list(stages().values())[-1]
    uid, _, gid = last(runtime, "USER").partition(":")
    return int(uid), int(gid)


def image_entrypoint() -> str:
    (entrypoint,) = json.loads(last(list(stages().values())[-1], "ENTRYPOINT"))
    return str(entrypoint)


def sources() -> set[str]:
    """Return what a wheel of this checkout is built from: pyproject.toml, the readme, packages."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tools = project["tool"]["setuptools"]
    roots = {name.split(".")[0] for name in tools["packages"]} | set(tools["package-dir"].values())
    return {"pyproject.toml", project["project"]["readme"]} | roots


def test_the_image_is_built_in_two_stages_on_a_slim_python_the_project_supports() -> None:
    named = stages()
    assert list(named) == ["build", "runtime"]
    needs = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = tuple(int(n) for n in needs.removeprefix(">=").split("."))
    for stage in named.values():
        base = re.fullmatch(r"python:(\d+)\.(\d+)-slim", stage[0].args)
        assert base, stage[0].args
        assert (int(base.group(1)), int(base.group(2))) >= floor
    assert named["build"][0] == named["runtime"][0]  # the wheels match the runtime's Python


def test_the_build_stage_makes_the_wheels_from_this_checkout() -> None:
    build = stages()["build"]
    copied = set()
    for ins in build:
        if ins.keyword == "COPY":
            *paths, _ = ins.args.split()
            assert not any(p.startswith("--from") for p in paths)
            copied |= {p.rstrip("/") for p in paths}
    assert copied == sources()
    assert last(build, "RUN") == "pip wheel --wheel-dir /wheels '.[api]'"


def test_the_runtime_installs_only_the_built_wheels_with_the_api_extra() -> None:
    runtime = stages()["runtime"]
    assert not [ins for ins in runtime if ins.keyword in ("COPY", "ADD")]  # no source tree
    (install,) = [ins.args for ins in runtime if "pip install" in ins.args]
    assert install.startswith("--mount=type=bind,from=build,source=/wheels,target=/wheels ")
    assert install.endswith("pip install --no-index --find-links=/wheels 'webhooks-outbox[api]'")


def test_the_image_runs_webhooks_as_a_non_root_user() -> None:
    runtime = stages()["runtime"]
    uid, gid = image_user()
    assert uid > 0 and gid > 0
    assert f"--uid {uid}" in " ".join(ins.args for ins in runtime if ins.keyword == "RUN")
    assert image_entrypoint() == "webhooks"
    (command,) = json.loads(last(runtime, "CMD"))
    assert runs(f"webhooks {command}", command)
    # Each role probes its own port (and `migrate` none): one HEALTHCHECK cannot fit them all.
    assert not [ins for ins in runtime if ins.keyword == "HEALTHCHECK"]


def ignored(path: str, patterns: list[str]) -> bool:
    """Return whether .dockerignore ``patterns`` leave ``path`` (or a parent) out."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes for pattern in patterns)


def test_dockerignore_sends_what_the_build_copies_and_keeps_the_rest_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in patterns if p.startswith("!")]
    for source in sources():
        assert not ignored(source, patterns), source
        for path in (ROOT / source).rglob("*") if (ROOT / source).is_dir() else []:
            relative = path.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not ignored(relative, patterns), relative
    for outside in (".git", ".venv", "tests", "worker/__pycache__/x.pyc", "dist"):
        assert ignored(outside, patterns), outside


hadolint = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(hadolint is None, reason="hadolint is not installed")
def test_hadolint_accepts_the_dockerfile() -> None:
    assert hadolint is not None
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
