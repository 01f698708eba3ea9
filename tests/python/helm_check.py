"""Checks the shoal Helm chart offline: lints it and renders it with the real Helm library
(helm-python-sdk binds Helm's Go SDK, no helm binary, no cluster), validates every rendered
manifest against the Kubernetes OpenAPI schemas of a pinned version (kubernetes-validate, strict:
unknown fields are errors), and asserts the properties the cluster depends on.

Usage: helm_check.py CHART_DIR OUT_DIR
Writes OUT_DIR/config.toml (the default-rendered config file, for the Rust side to parse with
shoal's own config type) and prints "helm chart: ok" when every check passed.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import tomllib

import helm_python as helm
import kubernetes_validate
import yaml

# The Kubernetes version the manifests are validated against (schemas ship in the wheel) and the
# one lint assumes. Chart.yaml's kubeVersion is >=1.25; 1.30 is the oldest release still in
# common managed-cluster support.
KUBE_VERSION = "1.30.0"
RELEASE = "demo"
NAMESPACE = "vectors"

failures: list[str] = []


def check(cond: bool, what: str) -> None:
    if not cond:
        failures.append(what)


def render(chart: helm.Chart, values: dict) -> dict[str, list[dict]]:
    """Renders and parses the chart; returns the manifests grouped by kind."""
    out = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    by_kind: dict[str, list[dict]] = {}
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            by_kind.setdefault("NOTES", []).append({"text": text})
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def validate_all(by_kind: dict[str, list[dict]], case: str) -> int:
    """Schema-validates every manifest; the ServiceMonitor (a CRD) gets structural checks."""
    n = 0
    for kind, docs in by_kind.items():
        if kind in ("NOTES", "ServiceMonitor"):
            continue
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                n += 1
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                failures.append(f"[{case}] {kind} {doc['metadata']['name']}: {path}: {e.message}")
    return n


def lint(chart_dir: str, values: dict, case: str) -> None:
    report = helm.lint(chart_dir, values, strict=True, kube_version="v" + KUBE_VERSION)
    check(not report["errors"], f"[{case}] lint errors: {report['errors']}")
    bad = [m for m in report["messages"] if m["severity"] >= 2]
    check(not bad, f"[{case}] lint warnings/errors: {bad}")


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def one(by_kind: dict, kind: str, case: str) -> dict:
    docs = by_kind.get(kind, [])
    check(len(docs) == 1, f"[{case}] expected one {kind}, got {len(docs)}")
    return docs[0] if docs else {}


def full(name: str = "shoal") -> str:
    return f"{RELEASE}-{name}"


def check_cluster(by_kind: dict, replicas: int, case: str) -> dict:
    """The wiring every node depends on; returns the shoal container."""
    sts = one(by_kind, "StatefulSet", case)
    spec = sts["spec"]
    check(spec["replicas"] == replicas, f"[{case}] replicas {spec['replicas']} != {replicas}")
    headless = f"{full()}-headless"
    check(spec["serviceName"] == headless, f"[{case}] serviceName {spec['serviceName']}")
    check(spec["podManagementPolicy"] == "Parallel", f"[{case}] pods must start in parallel")
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    env = env_of(c)
    suffix = f"{headless}.{NAMESPACE}.svc.cluster.local"

    peers = env["SHOAL_PEERS"]["value"].split(",")
    check(len(peers) == replicas, f"[{case}] {len(peers)} peers for {replicas} replicas")
    for i, peer in enumerate(peers):
        want = f"{i + 1}={full()}-{i}.{suffix}:6335"
        check(peer == want, f"[{case}] peer {i}: {peer!r} != {want!r}")
    ids = [int(p.split("=", 1)[0]) for p in peers]
    check(ids == list(range(1, replicas + 1)), f"[{case}] node ids {ids}")
    check(
        env["SHOAL_ADVERTISE"]["value"] == f"$(POD_NAME).{suffix}",
        f"[{case}] advertise {env['SHOAL_ADVERTISE']}",
    )
    check(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
        f"[{case}] POD_NAME must come from the downward API",
    )
    check(env["SHOAL_LISTEN"]["value"] == "0.0.0.0:6333", f"[{case}] listen")
    check(env["SHOAL_INTERNAL_LISTEN"]["value"] == "0.0.0.0:6335", f"[{case}] internal listen")
    check(env["SHOAL_DATA_DIR"]["value"] == "/data", f"[{case}] data dir")

    # Probes on the right paths and the named port.
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        got = c[probe]["httpGet"]
        check(got["path"] == path and got["port"] == "http", f"[{case}] {probe}: {got}")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"http": 6333, "internal": 6335}, f"[{case}] ports {ports}")

    # Hardening.
    sc = c["securityContext"]
    check(sc["readOnlyRootFilesystem"] is True, f"[{case}] root fs must be read-only")
    check(sc["allowPrivilegeEscalation"] is False, f"[{case}] privilege escalation")
    check(pod["securityContext"]["runAsNonRoot"] is True, f"[{case}] non-root")
    check(pod["securityContext"]["runAsUser"] != 0, f"[{case}] uid 0")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    check(mounts.get("/data") == "data", f"[{case}] data volume mount {mounts}")
    check(mounts.get("/tmp") == "tmp", f"[{case}] writable /tmp {mounts}")
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    check(
        anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname",
        f"[{case}] anti-affinity across nodes",
    )

    # Services: headless publishes not-ready pods and carries the internal port; the client
    # Service carries only the REST port.
    svcs = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    h = svcs[headless]["spec"]
    check(h["clusterIP"] == "None", f"[{case}] headless clusterIP")
    check(h["publishNotReadyAddresses"] is True, f"[{case}] publishNotReadyAddresses")
    check({p["port"] for p in h["ports"]} == {6333, 6335}, f"[{case}] headless ports")
    client = svcs[full()]["spec"]
    check([p["port"] for p in client["ports"]] == [6333], f"[{case}] client ports")
    sel = spec["selector"]["matchLabels"]
    for s in (h, client):
        check(s["selector"] == sel, f"[{case}] service selector {s['selector']} != {sel}")

    pdb = one(by_kind, "PodDisruptionBudget", case)
    check(pdb["spec"]["maxUnavailable"] == 1, f"[{case}] PDB maxUnavailable")
    check(pdb["spec"]["selector"]["matchLabels"] == sel, f"[{case}] PDB selector")
    return c


def secret_refs(c: dict) -> dict[str, dict]:
    return {
        name: e["valueFrom"]["secretKeyRef"]
        for name, e in env_of(c).items()
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }


def check_entrypoint(chart: helm.Chart) -> None:
    """Runs the container's real entry command with /bin/sh and a stand-in binary that prints
    what it was given: pod demo-shoal-4 must start `serve` as node 5."""
    with tempfile.TemporaryDirectory() as d:
        fake = os.path.join(d, "shoal")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\necho "node=$SHOAL_NODE_ID args=$*"\n')
        os.chmod(fake, 0o755)
        by_kind = render(chart, {"replicaCount": 5, "image": {"binary": fake}})
        (c,) = by_kind["StatefulSet"][0]["spec"]["template"]["spec"]["containers"]
        for pod, node in (("demo-shoal-0", 1), ("demo-shoal-4", 5), ("demo-shoal-12", 13)):
            out = subprocess.run(
                c["command"], env={"POD_NAME": pod, "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, check=False,
            )
            check(
                out.stdout.strip() == f"node={node} args=serve",
                f"entrypoint for {pod}: {out.stdout!r} {out.stderr!r}",
            )
        out = subprocess.run(c["command"], env={"POD_NAME": "weird-name"}, capture_output=True,
                             text=True, check=False)
        check(out.returncode != 0, "entrypoint must refuse a pod name without an ordinal")


def main() -> None:
    chart_dir, out_dir = sys.argv[1], sys.argv[2]
    chart = helm.Chart.load(chart_dir)
    check(chart.name == "shoal", f"chart name {chart.name}")
    validated = 0

    # 1. Defaults: 3 nodes, chart-made Secret with a generated cluster secret and a generated
    # admin API key (issue 14: the default install is not open to anyone who reaches it).
    case = "defaults"
    lint(chart_dir, {}, case)
    d = render(chart, {})
    validated += validate_all(d, case)
    c = check_cluster(d, 3, case)
    refs = secret_refs(c)
    check(refs["SHOAL_CLUSTER_SECRET"]["name"] == full(), f"[{case}] cluster secret ref {refs}")
    check(not refs["SHOAL_CLUSTER_SECRET"].get("optional"), f"[{case}] cluster secret optional")
    check(refs["SHOAL_API_KEY"].get("optional") is True, f"[{case}] api key must be optional")
    secret = one(d, "Secret", case)
    cs = base64.b64decode(secret["data"]["cluster-secret"]).decode()
    check(len(cs) == 48 and cs.isalnum(), f"[{case}] generated cluster secret {len(cs)} chars")
    key = base64.b64decode(secret["data"].get("api-key", "")).decode()
    check(len(key) == 40 and key.isalnum(), f"[{case}] generated api key {len(key)} chars")
    check(key not in yaml.safe_dump(d["StatefulSet"][0]), f"[{case}] api key inlined")
    pvc = d["StatefulSet"][0]["spec"]["volumeClaimTemplates"][0]
    check(pvc["metadata"]["name"] == "data", f"[{case}] PVC name")
    check(pvc["spec"]["resources"]["requests"]["storage"] == "10Gi", f"[{case}] PVC size")
    check("ServiceMonitor" not in d, f"[{case}] ServiceMonitor off by default")
    cm = one(d, "ConfigMap", case)
    toml_text = cm["data"]["config.toml"]
    parsed = tomllib.loads(toml_text)
    check(parsed["nlist"] == 256 and isinstance(parsed["nlist"], int), f"[{case}] nlist {parsed}")
    check(parsed["body_limit"] == 33554432, f"[{case}] body_limit written as an integer")
    with open(os.path.join(out_dir, "config.toml"), "w") as f:
        f.write(toml_text)
    cfg_vol = [v for v in d["StatefulSet"][0]["spec"]["template"]["spec"]["volumes"]
               if v["name"] == "config"]
    check(cfg_vol[0]["configMap"]["name"] == cm["metadata"]["name"], f"[{case}] config volume")
    notes = d["NOTES"][0]["text"]
    check("WARNING: no API key" not in notes, f"[{case}] NOTES must not warn: a key is generated")
    check("kubectl -n vectors get secret demo-shoal -o jsonpath='{.data.api-key}' | base64 -d"
          in notes, f"[{case}] NOTES must say how to read the generated key: {notes}")
    check("generated on install" in notes, f"[{case}] NOTES says the key was generated")
    check(key not in notes, f"[{case}] NOTES must not print the key itself")

    # 1b. Key generation turned off and no key: no api-key in the Secret, NOTES warns.
    case = "no-auth"
    values = {"auth": {"generateApiKey": False}}
    lint(chart_dir, values, case)
    d = render(chart, values)
    validated += validate_all(d, case)
    check_cluster(d, 3, case)
    check("api-key" not in one(d, "Secret", case)["data"], f"[{case}] no api key unless set")
    check("WARNING: no API key" in d["NOTES"][0]["text"], f"[{case}] NOTES warns")

    # 2. One node, a custom PVC size and storage class, config overrides.
    case = "one-node"
    values = {
        "replicaCount": 1,
        "persistence": {"size": "250Gi", "storageClass": "fast-ssd"},
        "config": {"nprobe": 32, "log_format": "text", "seal_threshold": 100000},
    }
    lint(chart_dir, values, case)
    d = render(chart, values)
    validated += validate_all(d, case)
    check_cluster(d, 1, case)
    pvc = d["StatefulSet"][0]["spec"]["volumeClaimTemplates"][0]["spec"]
    check(pvc["resources"]["requests"]["storage"] == "250Gi", f"[{case}] PVC size {pvc}")
    check(pvc.get("storageClassName") == "fast-ssd", f"[{case}] storage class {pvc}")
    parsed = tomllib.loads(d["ConfigMap"][0]["data"]["config.toml"])
    check(parsed["nprobe"] == 32 and parsed["seal_threshold"] == 100000, f"[{case}] {parsed}")
    check(parsed["log_format"] == "text", f"[{case}] log_format")
    check("fewer than 3 nodes" in d["NOTES"][0]["text"], f"[{case}] NOTES single-node note")

    # 3. Five nodes, API keys given as values: stored in the Secret, referenced by the pods,
    # never inlined in the StatefulSet.
    case = "five-nodes-keys"
    values = {
        "replicaCount": 5,
        "auth": {"apiKey": "admin-key-123", "readOnlyApiKey": "ro-key-456",
                 "clusterSecret": "node-secret-789"},
    }
    lint(chart_dir, values, case)
    d = render(chart, values)
    validated += validate_all(d, case)
    c = check_cluster(d, 5, case)
    data = one(d, "Secret", case)["data"]
    decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
    check(decoded == {"cluster-secret": "node-secret-789", "api-key": "admin-key-123",
                      "read-only-api-key": "ro-key-456"}, f"[{case}] secret data {decoded}")
    sts_text = yaml.safe_dump(d["StatefulSet"][0])
    for plain in ("admin-key-123", "ro-key-456", "node-secret-789"):
        check(plain not in sts_text, f"[{case}] {plain} inlined in the StatefulSet")
        check(base64.b64encode(plain.encode()).decode() not in sts_text,
              f"[{case}] {plain} inlined (base64) in the StatefulSet")
    refs = secret_refs(c)
    check({r["key"] for r in refs.values()} == {"cluster-secret", "api-key", "read-only-api-key"},
          f"[{case}] secret refs {refs}")

    # 4. existingSecret: no Secret rendered, every reference points at the existing one.
    case = "existing-secret"
    values = {"auth": {"existingSecret": "my-shoal-auth",
                       "secretKeys": {"clusterSecret": "node-secret"}}}
    lint(chart_dir, values, case)
    d = render(chart, values)
    validated += validate_all(d, case)
    c = check_cluster(d, 3, case)
    check("Secret" not in d, f"[{case}] a Secret was rendered: {d.get('Secret')}")
    refs = secret_refs(c)
    check(all(r["name"] == "my-shoal-auth" for r in refs.values()), f"[{case}] refs {refs}")
    check(refs["SHOAL_CLUSTER_SECRET"]["key"] == "node-secret", f"[{case}] custom key name")

    # 5. ServiceMonitor with a read-only key for scraping, hard anti-affinity.
    case = "service-monitor"
    values = {
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        "auth": {"apiKey": "a", "readOnlyApiKey": "r"},
        "podAntiAffinity": "hard",
    }
    lint(chart_dir, values, case)
    d = render(chart, values)
    validated += validate_all(d, case)
    sm = one(d, "ServiceMonitor", case)
    check(sm["apiVersion"] == "monitoring.coreos.com/v1", f"[{case}] apiVersion")
    check(sm["metadata"]["labels"]["release"] == "prom", f"[{case}] extra labels")
    (ep,) = sm["spec"]["endpoints"]
    check(ep["port"] == "http" and ep["path"] == "/metrics" and ep["interval"] == "15s",
          f"[{case}] endpoint {ep}")
    check(ep["authorization"]["credentials"] == {"name": full(), "key": "read-only-api-key"},
          f"[{case}] scrape auth {ep.get('authorization')}")
    client = [s for s in d["Service"] if s["metadata"]["name"] == full()][0]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        check(client["metadata"]["labels"].get(k) == v, f"[{case}] monitor selects {k}={v}")
    headless = [s for s in d["Service"] if s["metadata"]["name"] != full()][0]
    check(any(headless["metadata"]["labels"].get(k) != v
              for k, v in sm["spec"]["selector"]["matchLabels"].items()),
          f"[{case}] the monitor must not also select the headless Service (double scrape)")
    anti = d["StatefulSet"][0]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    check("requiredDuringSchedulingIgnoredDuringExecution" in anti, f"[{case}] hard anti")

    # 6. Values the chart must refuse.
    for case, values in (
        ("zero-replicas", {"replicaCount": 0}),
        ("listen-in-config", {"config": {"listen": "0.0.0.0:1"}}),
        ("nested-config", {"config": {"nested": {"a": 1}}}),
    ):
        try:
            render(chart, values)
            failures.append(f"[{case}] rendered, should have failed")
        except helm.HelmError:
            pass

    check_entrypoint(chart)
    chart.close()

    check(validated >= 34, f"only {validated} manifests schema-validated")
    if failures:
        print("helm chart checks FAILED:")
        for f in failures:
            print("  -", f)
        sys.exit(1)
    print(f"validated {validated} manifests against Kubernetes {KUBE_VERSION} schemas")
    print("helm chart: ok")


if __name__ == "__main__":
    main()
