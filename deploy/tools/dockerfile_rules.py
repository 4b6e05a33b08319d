#!/usr/bin/env python3
"""The project's own rules for deploy/Dockerfile, on top of hadolint's general ones.

  dockerfile_rules.py DOCKERFILE

Checks, each printed as PASS or FAIL:
  - multi-stage: at least two FROM lines, the build stage named and copied from;
  - every base image pinned to a tag or digest other than `latest`;
  - the build runs `cargo build --release --locked`;
  - the final stage sets USER to a non-root numeric uid (or `nonroot`);
  - no HEALTHCHECK (the orchestrator probes /live and /ready);
  - EXPOSE 8080 8443 9090;
  - ENTRYPOINT in exec (JSON array) form: `dashpush run -c /etc/dashpush/dashpush.yaml`;
  - nothing in the final stage that needs a writable root filesystem at run time
    (no VOLUME; the process itself writes no files: see docs/operations.md).
Exits 1 if any rule fails.
"""
import json
import re
import sys


def instructions(text):
    """(KEYWORD, argument) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, arg = buf.partition(" ")
        out.append((keyword.upper(), arg.strip()))
        buf = ""
    return out


def main(path):
    ins = instructions(open(path, encoding="utf-8").read())
    stages = []  # list of lists of instructions
    for k, a in ins:
        if k == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((k, a))
    results = []

    def rule(ok, what):
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}: {what}")

    froms = [a for k, a in ins if k == "FROM"]
    rule(len(froms) >= 2, f"multi-stage build ({len(froms)} FROM lines)")
    names = [m.group(1) for a in froms if (m := re.search(r"\bAS\s+(\S+)", a, re.I))]
    final = stages[-1] if stages else []
    copied = [a for k, a in final if k == "COPY" and "--from=" in a]
    rule(bool(names) and any(f"--from={n}" in a for n in names for a in copied),
         "the final stage copies the binary from a named build stage")
    for a in froms:
        image = a.split()[0]
        ref = image.split("@")[0]
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else None
        rule("@sha256:" in image or (tag is not None and tag != "latest"),
             f"base image {image} is pinned to a tag other than latest")
    runs = " ".join(a for k, a in ins if k == "RUN")
    rule(re.search(r"cargo build\b[^&;]*--release", runs) is not None
         and re.search(r"cargo build\b[^&;]*--locked", runs) is not None,
         "cargo build --release --locked")
    users = [a for k, a in final if k == "USER"]
    user = users[-1].split(":")[0] if users else ""
    rule(user == "nonroot" or (user.isdigit() and int(user) != 0),
         f"final stage runs as a non-root user (USER {users[-1] if users else 'unset'})")
    rule(not any(k == "HEALTHCHECK" for k, _ in ins), "no HEALTHCHECK")
    rule(not any(k == "VOLUME" for k, _ in final), "no VOLUME (read-only root filesystem)")
    exposed = set(" ".join(a for k, a in final if k == "EXPOSE").split())
    rule({"8080", "8443", "9090"} <= exposed, f"EXPOSE 8080 8443 9090 (found {sorted(exposed)})")
    eps = [a for k, a in final if k == "ENTRYPOINT"]
    try:
        ep = json.loads(eps[-1]) if eps else None
    except json.JSONDecodeError:
        ep = None
    rule(isinstance(ep, list), "ENTRYPOINT in exec form")
    rule(isinstance(ep, list) and len(ep) == 4 and ep[0].split("/")[-1] == "dashpush"
         and ep[1:] == ["run", "-c", "/etc/dashpush/dashpush.yaml"],
         "ENTRYPOINT is dashpush run -c /etc/dashpush/dashpush.yaml")
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
