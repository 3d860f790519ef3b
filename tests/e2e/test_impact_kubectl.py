"""Live baselines for `kubectl scale` (issue 13): `baseline: live` reads the
replicas that run now with the command's own kubeconfig and context, so
`growth: 2` means twice what runs now, and the reviewer reads "4 → 16
replicas (×4)". A real cluster cannot run here: the real kubectl talks to a
small recorded API server on 127.0.0.1 (the discovery documents and the one
deployment it asks for), which also records the PATCH a scale sends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xguard_exe

XG = xguard_exe()
pytestmark = pytest.mark.slow

if not shutil.which("kubectl"):  # .ci/run installs Debian's kubernetes-client
    pytest.skip("kubectl is not installed", allow_module_level=True)

DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/web"
RECORDED: dict[str, Any] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "groupVersion": "apps/v1",
        "resources": [
            {
                "name": "deployments",
                "singularName": "deployment",
                "namespaced": True,
                "kind": "Deployment",
                "verbs": ["get", "list", "patch", "update"],
                "shortNames": ["deploy"],
            },
            {
                "name": "deployments/scale",
                "singularName": "",
                "namespaced": True,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            },
        ],
    },
    DEPLOYMENT: {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 4},
    },
}


class _Handler(BaseHTTPRequestHandler):
    calls: list[str]

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.calls.append(f"GET {path}")
        if path in RECORDED:
            self._send(200, RECORDED[path])
        else:
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "NotFound", "code": 404})  # fmt: skip

    def do_PATCH(self) -> None:
        path = self.path.split("?")[0]
        n = int(self.headers.get("Content-Length") or 0)
        self.calls.append(f"PATCH {path} {self.rfile.read(n).decode()}")
        self._send(200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                         "metadata": {"name": "web", "namespace": "default"},
                         "spec": {"replicas": 0}})  # fmt: skip

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    calls: list[str] = []
    handler = type("H", (_Handler,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        yield kubeconfig, calls
    finally:
        server.shutdown()
        server.server_close()


def _kubeconfig(url: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: rec\n  cluster: {{server: '{url}'}}\n"
        "users:\n- name: u\n  user: {token: t}\n"
        "contexts:\n- name: rec\n  context: {cluster: rec, user: u, namespace: default}\n"
        "current-context: rec\n"
    )


RULES = """\
default: require_approval
rules:
  - pattern: "kubectl scale"
    action: allow
    baseline: live
    growth: 2
    network: allow  # it talks to the API server from inside the kernel box
"""


def _run(home: Path, tmp: Path, cmd: str) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "rules.yaml").write_text(RULES)
    env = dict(os.environ, XGUARD_HOME=str(home), XGUARD_WAIT="0", HOME=str(tmp))
    return subprocess.run(
        [*XG, "-c", cmd], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _pending(home: Path) -> list[dict[str, Any]]:
    env = dict(os.environ, XGUARD_HOME=str(home))
    p = subprocess.run(
        [*XG, "pending", "--json"], env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(p.stdout))


@pytest.mark.parametrize(
    "case",
    [
        ("scale deployment/web --replicas=6", 6, "allow"),  # 6 <= 2 x 4
        ("scale deploy web --replicas 8 -n default", 8, "allow"),
        ("scale deployment/web --replicas=16 --context rec", 16, "require_approval"),
    ],
)
def test_growth_is_measured_against_what_runs_now(
    cluster: tuple[Path, list[str]], xguard_home: Path, tmp_path: Path, case: tuple[str, int, str]
) -> None:
    words, to, decision = case
    kubeconfig, calls = cluster
    p = _run(xguard_home, tmp_path, f"kubectl {words} --kubeconfig {kubeconfig}")
    assert any(c == f"GET {DEPLOYMENT}" for c in calls), calls  # the live read
    patched = [c for c in calls if c.startswith("PATCH")]
    if decision == "allow":
        assert p.returncode == 0, p.stderr
        assert patched and f'"replicas":{to}' in patched[0]
    else:
        assert p.returncode == 75, p.stderr
        assert not patched
        [req] = _pending(xguard_home)
        [item] = req["impact"]
        assert (item["replicas"], item["to"], item["method"]) == (4, to, "live")
        assert item["summary"] == "4 → 16 replicas (×4)"
        assert any("4 → 16 replicas (×4): over 2 x the 4 running now (8)" in r
                   for r in req["reasons"])  # fmt: skip


def test_no_cluster_reachable_asks_a_person(xguard_home: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_kubeconfig("http://127.0.0.1:1"))
    p = _run(
        xguard_home, tmp_path, f"kubectl scale deploy/web --replicas=3 --kubeconfig {kubeconfig}"
    )
    assert p.returncode == 75, p.stderr
    [req] = _pending(xguard_home)
    assert "no cluster reachable" in req["impact"][0]["error"]
    assert any("the live baseline cannot be read" in r for r in req["reasons"])
