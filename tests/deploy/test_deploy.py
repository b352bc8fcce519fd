"""deploy/: the Prometheus rules and scrape config pass promtool (`check` and the rules' unit tests),
every metric the Grafana dashboard and the alert rules name is one the code exports — checked
against real scrapes of a running `qscrypt proxy` (with its Kafka coordinator), `qscrypt fleet` and
the API — and every systemd unit starts a command the real `qscrypt` parser accepts."""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.config import ApiConfig
from cli.main import build_parser
from qscrypt.db.embedded import free_port
from tests.fleet import devices as shapes
from tests.fleet.devices import Device

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "qscrypt.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "untyped": ("",),
            "info": ("_info",)}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: it comes with the Debian package prometheus "
                    "(make system-deps installs it)")
    return path


def run_promtool(*args: str, cwd: Path) -> str:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_promtool_checks_the_rules_and_config_and_runs_the_rules_unit_tests() -> None:
    out = run_promtool("check", "rules", "alerts.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS: 15 rules found" in out, out
    run_promtool("check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    out = run_promtool("test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out, out
    # Every alert has a unit test.
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    assert alerts == tested, f"alerts without a unit test: {sorted(alerts - tested)}"


# --- PromQL: the metric names a query reads ----------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions, keywords, label
    names (inside {…} or a by/without/on/ignoring/group_* list), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        after = text[match.end():].lstrip()
        if after.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or text[max(0, match.start() - 1)].isdigit():
            continue
        names.add(word)
    return names


def test_metric_names_reads_promql() -> None:
    assert metric_names('sum by (le, upstream) (rate(qscrypt_upstream_submit_seconds_bucket{a="b"}[5m]))') \
        == {"qscrypt_upstream_submit_seconds_bucket"}
    assert metric_names("a_x - a_x offset 1h > 0 and on (device) b_y >= 100") == {"a_x", "b_y"}
    assert metric_names('label_values(qscrypt_asic_up, device)') == {"qscrypt_asic_up", "device"}
    assert metric_names("histogram_quantile(0.95, x) * 60 / 1e3") == {"x"}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []

    def walk(panels: list[dict]) -> Iterator[dict]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(METRIC, LABEL): the metric only (the label is checked below).
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert match, query
            queries.append((f"variable {variable['name']}", match.group(1)))
    return queries


def rule_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


# --- the real processes and their scrapes ------------------------------------------------------------


async def scrape(url: str) -> str:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession() as session, session.get(url, timeout=timeout) as r:
        assert r.status == 200, (url, r.status)
        return await r.text()


def exported(text: str) -> dict[str, str]:
    """sample name → family type, for every family the scrape declares (labelled families with no
    series yet included: their # TYPE line is there)."""
    names = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.type
    return names


async def wait_for_scrape(url: str, process: subprocess.Popen[bytes], log: Path, ready: str,
                          timeout: float = 60) -> str:
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            last = await scrape(url)
            if ready in last:
                return last
        except (aiohttp.ClientError, TimeoutError, AssertionError):
            pass
        await asyncio.sleep(0.3)
    pytest.fail(f"{url} did not show {ready!r} within {timeout:.0f} s:\n{last[-2000:]}\n"
                f"{log.read_text()[-3000:]}")


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def scrapes(pg_dsn: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """Real scrapes: `qscrypt proxy` (its upstream down, its Kafka coordinator on the in-process
    bus), `qscrypt fleet` polling an L3+ answering on loopback, and the API."""
    proxy_port, fleet_port = free_port(), free_port()
    config = tmp_path / "qscrypt.toml"
    config.write_text(f"""
[proxy]
metrics_port = {proxy_port}
metrics_host = "127.0.0.1"
spill_dir = "{tmp_path / 'spill'}"
[proxy.listen]
host = "127.0.0.1"
port = 0
[[proxy.upstreams]]
name = "pool-a"
kind = "pool"
url = "stratum+tcp://127.0.0.1:{free_port()}"
user = "u"
password = "x"
[coordinator]
upstream = "pool-a"
store = "memory"
[coordinator.bus]
kind = "memory"
[fleet]
poll_s = 1
window_s = 10
metrics_host = "127.0.0.1"
""")
    device = await Device(shapes.l3).start()
    proxy = start(["-c", str(config), "proxy", "--no-database"], tmp_path / "proxy.log")
    fleet = start(["-c", str(config), "fleet", "--dsn", pg_dsn, "--metrics-port", str(fleet_port),
                   "--device", f"l3-test=127.0.0.1:{device.port}"], tmp_path / "fleet.log")
    runner = web.AppRunner(create_app(ApiConfig(rate_limit_per_s=0), pg_dsn, run_decider=False))
    try:
        await runner.setup()
        api_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", api_port).start()
        await scrape(f"http://127.0.0.1:{api_port}/healthz")  # one request, so request series exist
        yield {
            "proxy": await wait_for_scrape(f"http://127.0.0.1:{proxy_port}/metrics", proxy,
                                           tmp_path / "proxy.log", "qscrypt_coordinator_workers_alive"),
            "fleet": await wait_for_scrape(f"http://127.0.0.1:{fleet_port}/metrics", fleet,
                                           tmp_path / "fleet.log", 'qscrypt_asic_up{device="l3-test"} 1.0'),
            "api": await scrape(f"http://127.0.0.1:{api_port}/metrics"),
        }
    finally:
        await runner.cleanup()
        stop(proxy)
        stop(fleet)
        await device.close()


async def test_dashboard_and_alerts_name_only_metrics_the_code_exports(scrapes: dict[str, str]) -> None:
    names: dict[str, str] = {}
    for text in scrapes.values():
        names.update(exported(text))
    fleet_scrape = scrapes["fleet"]
    chain = 'qscrypt_asic_chain_hashrate_hs{chain="2",device="l3-test"} 1.3719e+08'
    assert chain in fleet_scrape, fleet_scrape
    unknown = []
    for where, expr in [*dashboard_queries(), *rule_queries()]:
        for name in metric_names(expr):
            if name == "device":  # the label of label_values(…, device)
                continue
            if name not in names:
                unknown.append(f"{where}: {name} (in {expr!r})")
    assert not unknown, "metrics nothing exports:\n" + "\n".join(unknown)
    # Every figure the fleet poller and the proxy (with its coordinator) export is on a panel or in a
    # rule. (`_created` series, which the text format shows as families of their own, are not figures.)
    used = {n for _, e in [*dashboard_queries(), *rule_queries()] for n in metric_names(e)}
    for source in ("fleet", "proxy"):
        unshown = sorted(f.name for f in text_string_to_metric_families(scrapes[source])
                         if not f.name.endswith("_created")
                         and not any(f.name + s in used for s in SUFFIXES.get(f.type, ("",))))
        assert unshown == [], f"exported by {source}, on no panel and in no rule: {unshown}"


def test_systemd_units_run_commands_qscrypt_accepts() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {"qscrypt-proxy.service", "qscrypt-api.service",
                                        "qscrypt-fleet.service", "qscrypt-aggregator.service",
                                        "qscrypt-worker@.service"}
    timer = configparser.ConfigParser(strict=False)
    timer.read(DEPLOY / "systemd" / "qscrypt-aggregator.timer")
    assert timer["Timer"]["OnUnitActiveSec"] == "5min"
    parser = build_parser()
    for unit in units:
        parsed = configparser.ConfigParser(strict=False, interpolation=None)
        parsed.optionxform = str  # type: ignore[assignment,method-assign]
        parsed.read(unit)
        exec_start = parsed["Service"]["ExecStart"]
        argv = shlex.split(exec_start.replace("%i", "rig7").replace("$QSCRYPT_WORKER_ARGS",
                                                                      "--bootstrap kafka1:9093"))
        assert argv[0] == "/opt/qscrypt/.venv/bin/qscrypt", unit
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{unit.name}: qscrypt refuses {exec_start!r}")
        assert callable(args.func), unit
        assert parsed["Service"]["User"] == "qscrypt", unit
