#!/usr/bin/env python3
"""Renders and validates deploy/k8s (the base and every overlay).

  k8s_check.py K8S_DIR [--kube-version 1.30.0] [--dashpush-bin PATH]

For each kustomization (base/, overlays/*/):
  1. render it with tools/kustomize_lite.py; when `kubectl` is on PATH, also with
     `kubectl kustomize`, and fail if the two differ;
  2. validate every built-in object against the Kubernetes JSON schemas of --kube-version,
     strict (unknown fields fail), with kubernetes-validate;
  3. validate the prometheus-operator objects (ServiceMonitor, PrometheusRule) with the models
     generated from the operator's CRDs (cloudcoil-models-prometheus-operator), strict: a field
     the model does not know fails;
  4. check the project's rules across objects: probes on the admin port, the restricted security
     context, memory request = cache.max_bytes + 128 MiB, grace period longer than preStop sleep
     + shutdown_grace_ms, ports and selectors that agree, the config passing
     `dashpush check-config` (when the binary is there);
and, once: every overlay's config file differs from the base's only in cache.max_bytes, and
the base config equals deploy/dashpush.example.yaml but for the keys adjusted for a cluster.
Prints PASS/FAIL lines and `N passed, N failed`; exits 1 on any failure.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kustomize_lite  # noqa: E402

MI = 1024 * 1024
SUFFIX = {"Ki": 1024, "Mi": MI, "Gi": 1024 * MI, "K": 1000, "M": 1000**2, "G": 1000**3}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
EXPECTED_KINDS = {"ConfigMap", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget",
                  "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule"}


def quantity(q):
    q = str(q)
    for s, m in SUFFIX.items():
        if q.endswith(s):
            return int(float(q[: -len(s)]) * m)
    return int(float(q))


class Checker:
    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, ok, what):
        if ok:
            self.passed += 1
            print(f"PASS: {what}")
        else:
            self.failed += 1
            print(f"FAIL: {what}")
        return ok


def by_kind(objects):
    out = {}
    for o in objects:
        out.setdefault(o["kind"], []).append(o)
    return out


def key(o):
    return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


def validate_builtin(o, version):
    import kubernetes_validate
    try:
        kubernetes_validate.validate(o, version, strict=True)
        return None
    except Exception as e:  # ValidationError, SchemaNotFoundError
        return getattr(e, "message", str(e)).splitlines()[0]


def validate_crd(o):
    from cloudcoil.models.prometheus_operator import v1
    model = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}[o["kind"]]
    try:
        m = model.model_validate(o)
    except Exception as e:
        return str(e).splitlines()[0]
    back = m.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if back != o:
        return "fields unknown to the CRD schema were dropped: " + diff_keys(o, back)
    return None


def diff_keys(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                return f"{path}.{k}"
            d = diff_keys(a[k], b[k], f"{path}.{k}")
            if d:
                return d
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff_keys(x, y, f"{path}[{i}]")
            if d:
                return d
    elif a != b:
        return f"{path} ({a!r} != {b!r})"
    return ""


def check_tree(name, kdir, args, check):
    print(f"-- {name}")
    try:
        objects = kustomize_lite.render(kdir)
    except kustomize_lite.KustomizeError as e:
        check(False, f"{name}: render: {e}")
        return None
    check(True, f"{name}: rendered {len(objects)} objects with kustomize_lite")
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", kdir], capture_output=True, text=True)
        if check(r.returncode == 0, f"{name}: kubectl kustomize renders" + (f": {r.stderr.strip()[:300]}" if r.returncode else "")):
            real = [d for d in yaml.safe_load_all(r.stdout) if d]
            same = {key(o): o for o in real} == {key(o): o for o in objects}
            check(same, f"{name}: kustomize_lite output equals kubectl kustomize's")
    else:
        print(f"SKIP: {name}: kubectl not on PATH, kustomize_lite output not cross-checked")
    kinds = by_kind(objects)
    check(set(kinds) == EXPECTED_KINDS, f"{name}: kinds {sorted(kinds)}")

    for o in objects:
        what = f"{name}: {o['kind']}/{o['metadata']['name']}"
        if o["kind"] in CRD_KINDS:
            err = validate_crd(o)
            check(err is None, f"{what} valid against the prometheus-operator CRD model"
                  + (f": {err}" if err else ""))
        else:
            err = validate_builtin(o, args.kube_version)
            check(err is None, f"{what} valid against Kubernetes {args.kube_version} (strict)"
                  + (f": {err}" if err else ""))

    # ---- cross-object rules ----
    try:
        dep = kinds["Deployment"][0]
        cm = kinds["ConfigMap"][0]
        svc = next(s for s in kinds["Service"] if s["metadata"]["name"] == "dashpush")
        admin_svc = next(s for s in kinds["Service"] if s["metadata"]["name"] == "dashpush-admin")
        netpol = kinds["NetworkPolicy"][0]
    except (KeyError, IndexError, StopIteration):
        check(False, f"{name}: Deployment, ConfigMap, Services dashpush and dashpush-admin, NetworkPolicy present")
        return None
    conf = yaml.safe_load(cm["data"]["dashpush.yaml"])
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})

    def port_of(addr):
        return int(str(addr).rsplit(":", 1)[1])

    check(port_of(conf["listen"]) == ports.get("http") == 8080, f"{name}: config listen is container port http 8080")
    check(port_of(conf["admin"]) == ports.get("admin") == 9090, f"{name}: config admin is container port admin 9090")
    check(ports.get("https") == 8443, f"{name}: container port https 8443")
    check(str(conf["listen"]).startswith("0.0.0.0:") and str(conf["admin"]).startswith("0.0.0.0:"),
          f"{name}: listeners on all interfaces")
    lp, rp = c.get("livenessProbe", {}).get("httpGet", {}), c.get("readinessProbe", {}).get("httpGet", {})
    check(lp.get("path") == "/live" and lp.get("port") == "admin", f"{name}: liveness probe /live on admin")
    check(rp.get("path") == "/ready" and rp.get("port") == "admin", f"{name}: readiness probe /ready on admin")
    check(psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
    check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities drop ALL")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp RuntimeDefault")
    res = c.get("resources", {})
    cache = int(conf.get("cache", {}).get("max_bytes", 268435456))
    req = quantity(res.get("requests", {}).get("memory", 0))
    lim = quantity(res.get("limits", {}).get("memory", 0))
    check(req == cache + 128 * MI,
          f"{name}: memory request {req // MI}Mi = cache.max_bytes {cache // MI}Mi + 128Mi")
    check(lim > req, f"{name}: memory limit {lim // MI}Mi above the request")
    cpu = str(res.get("requests", {}).get("cpu", "0"))
    cpu_m = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
    check(cpu_m >= 500, f"{name}: cpu request {cpu_m}m, at least 500m")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    drain = int(conf.get("shutdown_grace_ms", 10000)) / 1000
    check(grace > sleep + drain,
          f"{name}: terminationGracePeriodSeconds {grace} > preStop sleep {sleep} + drain {drain:g}")
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/etc/dashpush"]
    check(len(mounts) == 1 and "subPath" not in mounts[0],
          f"{name}: config mounted as a directory at /etc/dashpush (no subPath: updates reach the pod)")
    vol = [v for v in pod.get("volumes", []) if mounts and v["name"] == mounts[0]["name"]]
    check(bool(vol) and vol[0].get("configMap", {}).get("name") == cm["metadata"]["name"],
          f"{name}: the mount is the {cm['metadata']['name']} ConfigMap")
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    check({n: (p["port"], p["targetPort"]) for n, p in sports.items()}
          == {"http": (8080, "http"), "https": (8443, "https")},
          f"{name}: traffic Service ports http 8080, https 8443 (no admin port) to the named container ports")
    check([(p["name"], p["port"], p["targetPort"]) for p in admin_svc["spec"]["ports"]] == [("admin", 9090, "admin")],
          f"{name}: admin Service has only the admin port 9090")
    rules = netpol["spec"].get("ingress", [])
    open_ports = {p["port"] for r in rules if not r.get("from") for p in r.get("ports", [])}
    admin_rules = [r for r in rules if any(p["port"] == "admin" for p in r.get("ports", []))]
    check(netpol["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "dashpush"}
          and open_ports == {"http", "https"}
          and admin_rules and all(r.get("from") for r in admin_rules),
          f"{name}: NetworkPolicy opens http/https to all and admin only to selected sources")
    check(sports.get("http", {}).get("appProtocol") == "kubernetes.io/h2c", f"{name}: http appProtocol kubernetes.io/h2c")

    def selects(sel):
        return all(labels.get(k) == v for k, v in sel.items())

    check(selects(svc["spec"]["selector"]) and selects(admin_svc["spec"]["selector"]),
          f"{name}: both Services select the pods")
    check(selects(dep["spec"]["selector"]["matchLabels"]), f"{name}: Deployment selector matches its pods")
    pdb = kinds["PodDisruptionBudget"][0]
    check(selects(pdb["spec"]["selector"]["matchLabels"]), f"{name}: PodDisruptionBudget selects the pods")
    hpa = kinds["HorizontalPodAutoscaler"][0]
    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], f"{name}: HPA targets the Deployment")
    check(hpa["spec"]["minReplicas"] == dep["spec"].get("replicas", 1),
          f"{name}: Deployment replicas {dep['spec'].get('replicas', 1)} = HPA minReplicas {hpa['spec']['minReplicas']}")
    check(hpa["spec"]["minReplicas"] >= 2, f"{name}: at least 2 replicas (PDB maxUnavailable 1 keeps one serving)")
    sm = kinds["ServiceMonitor"][0]
    smsel = sm["spec"]["selector"]["matchLabels"].items()
    check(all(admin_svc["metadata"].get("labels", {}).get(k) == v for k, v in smsel)
          and not all(svc["metadata"].get("labels", {}).get(k) == v for k, v in smsel),
          f"{name}: ServiceMonitor selects the admin Service only")
    check(sm["spec"].get("jobLabel") == "app.kubernetes.io/name"
          and admin_svc["metadata"]["labels"].get("app.kubernetes.io/name") == "dashpush",
          f"{name}: scrape job label is dashpush (the alerts select job=\"dashpush\")")
    check([e.get("port") for e in sm["spec"]["endpoints"]] == ["admin"], f"{name}: ServiceMonitor scrapes port admin")
    if args.dashpush_bin and os.access(args.dashpush_bin, os.X_OK):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(cm["data"]["dashpush.yaml"])
        r = subprocess.run([args.dashpush_bin, "check-config", "-c", f.name], capture_output=True, text=True)
        os.unlink(f.name)
        check(r.returncode == 0, f"{name}: dashpush check-config: {(r.stdout + r.stderr).strip()}")
    else:
        print(f"SKIP: {name}: dashpush binary not found ({args.dashpush_bin}), config not checked by check-config")
    return conf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("k8s_dir")
    ap.add_argument("--kube-version", default="1.30.0")
    ap.add_argument("--dashpush-bin", default="")
    args = ap.parse_args()
    check = Checker()
    base = check_tree("base", os.path.join(args.k8s_dir, "base"), args, check)
    for odir in sorted(glob.glob(os.path.join(args.k8s_dir, "overlays", "*"))):
        name = "overlay " + os.path.basename(odir)
        conf = check_tree(name, odir, args, check)
        if base is not None and conf is not None:
            b, o = dict(base), dict(conf)
            b["cache"] = {k: v for k, v in b.get("cache", {}).items() if k != "max_bytes"}
            o["cache"] = {k: v for k, v in o.get("cache", {}).items() if k != "max_bytes"}
            check(b == o, f"{name}: config equals the base's but for cache.max_bytes")
    # The cluster config is the example config adjusted for the cluster: same keys and values
    # but for the listeners, the origin and the log format.
    example_path = os.path.join(args.k8s_dir, "..", "dashpush.example.yaml")
    if base is not None and os.path.exists(example_path):
        example = yaml.safe_load(open(example_path, encoding="utf-8"))
        adjusted = {"listen", "admin", "origin", "routes", "tls", "log_format"}
        ex = {k: v for k, v in example.items() if k not in adjusted}
        bs = {k: v for k, v in base.items() if k not in adjusted}
        missing = sorted(set(ex) - set(bs))
        differing = sorted(k for k in set(ex) & set(bs) if ex[k] != bs[k])
        check(not missing and not differing and set(bs) <= set(ex),
              "base config = deploy/dashpush.example.yaml but for listen, admin, origin, log_format"
              + (f" (missing {missing})" if missing else "")
              + (f" (differing {differing})" if differing else "")
              + (f" (extra {sorted(set(bs) - set(ex))})" if not set(bs) <= set(ex) else ""))
    print(f"{check.passed} passed, {check.failed} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
