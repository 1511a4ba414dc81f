"""deploy/ agrees with the code: metric names, commands, ports, probes; and the tools accept it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.observe import metrics
from worker.relay.daemon import Stats
from worker.settings import Settings

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


def test_procfile_runs_the_relay_and_the_workers() -> None:
    assert procfile() == {"relay": "webhooks relay", "worker": "webhooks worker"}


@pytest.mark.parametrize("process", ["relay", "worker"])
def test_systemd_units_run_what_the_procfile_runs_and_stop_cleanly(process: str) -> None:
    keys = unit(f"webhooks-{process}.service")
    (exec_start,) = keys["ExecStart"]
    assert exec_start.endswith("/bin/" + procfile()[process])
    assert keys["EnvironmentFile"] == ["/etc/webhooks/webhooks.env"]
    assert keys["Restart"] == ["on-failure"]
    assert keys["KillSignal"] == ["SIGTERM"]
    # Dramatiq's main process forwards SIGTERM; a second one would kill attempts midway.
    assert keys["KillMode"] == ["mixed"]
    assert keys["NoNewPrivileges"] == ["yes"]
    assert keys["ProtectSystem"] == ["strict"]
    assert "ProcSubset" not in keys  # the process metrics read /proc/stat


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
