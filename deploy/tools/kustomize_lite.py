#!/usr/bin/env python3
"""A small renderer for the kustomizations in deploy/k8s, for machines without kustomize.

  kustomize_lite.py DIR      prints the rendered objects as a YAML stream

It implements exactly what deploy/k8s uses and refuses anything else, so a new feature in a
kustomization.yaml fails loudly instead of rendering wrong:
  resources (files, or directories holding a kustomization), namespace, replicas, images
  (newName/newTag), configMapGenerator (files; behavior create/replace/merge), generatorOptions
  (disableNameSuffixHash must be true; labels), patches (path: a strategic-merge patch naming its
  target by kind and metadata.name; lists of maps are merged by `name`).
deploy/check-k8s.sh compares its output with `kubectl kustomize` whenever kubectl is present.
"""
import copy
import os
import sys

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "replicas", "images",
             "configMapGenerator", "generatorOptions", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(Exception):
    pass


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def merge(base, patch):
    """Strategic merge, as far as deploy/k8s needs it."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out = [copy.deepcopy(x) for x in base]
        for p in patch:
            for i, b in enumerate(out):
                if b["name"] == p["name"]:
                    out[i] = merge(b, p)
                    break
            else:
                out.append(copy.deepcopy(p))
        return out
    return copy.deepcopy(patch)


def generate_configmaps(kdir, spec, options, objects):
    for gen in spec:
        unknown = set(gen) - {"name", "files", "behavior"}
        if unknown:
            raise KustomizeError(f"{kdir}: configMapGenerator keys not supported: {sorted(unknown)}")
        data = {}
        for entry in gen.get("files", []):
            key, _, rel = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
            with open(os.path.join(kdir, rel), encoding="utf-8") as f:
                data[key] = f.read()
        behavior = gen.get("behavior", "create")
        existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"{kdir}: ConfigMap {gen['name']} already exists")
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
            if options.get("labels"):
                cm["metadata"]["labels"] = dict(options["labels"])
            objects.append(cm)
        elif behavior in ("replace", "merge"):
            if not existing:
                raise KustomizeError(f"{kdir}: ConfigMap {gen['name']} to {behavior} not found")
            cm = existing[0]
            cm["data"] = data if behavior == "replace" else {**cm.get("data", {}), **data}
        else:
            raise KustomizeError(f"{kdir}: configMapGenerator behavior {behavior} not supported")


def render(kdir):
    kfile = os.path.join(kdir, "kustomization.yaml")
    k = load_docs(kfile)[0]
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: keys not supported by kustomize_lite: {sorted(unknown)}")
    objects = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(kdir, res))
        objects.extend(render(path) if os.path.isdir(path) else load_docs(path))
    options = k.get("generatorOptions", {})
    if k.get("configMapGenerator"):
        # A replace/merge keeps the name the base generated; a new ConfigMap must not be hashed.
        creates = any(g.get("behavior", "create") == "create" for g in k["configMapGenerator"])
        if creates and options.get("disableNameSuffixHash") is not True:
            raise KustomizeError(f"{kfile}: only disableNameSuffixHash: true is supported")
        generate_configmaps(kdir, k["configMapGenerator"], options, objects)
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            raise KustomizeError(f"{kfile}: only `patches: - path: FILE` is supported")
        for patch in load_docs(os.path.join(kdir, p["path"])):
            targets = [o for o in objects if o["kind"] == patch["kind"]
                       and o["metadata"]["name"] == patch["metadata"]["name"]]
            if len(targets) != 1:
                raise KustomizeError(f"{kfile}: patch {p['path']} matches {len(targets)} objects")
            objects[objects.index(targets[0])] = merge(targets[0], patch)
    for r in k.get("replicas", []):
        hits = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")
                and o["metadata"]["name"] == r["name"]]
        if not hits:
            raise KustomizeError(f"{kfile}: replicas for unknown workload {r['name']}")
        for o in hits:
            o["spec"]["replicas"] = r["count"]
    for img in k.get("images", []):
        for o in objects:
            pod = o.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                name, _, tag = c["image"].partition(":")
                if name == img["name"]:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    if "namespace" in k:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objects


def main(argv):
    try:
        objects = render(argv[0])
    except KustomizeError as e:
        print(f"kustomize_lite: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
