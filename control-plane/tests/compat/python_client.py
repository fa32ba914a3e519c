#!/usr/bin/env python3
"""Drives the official Kubernetes Python client (PyPI kubernetes 37.x) against a coxswain API server.

Usage: python_client.py KUBECONFIG. Exits non-zero, saying what failed, on the first problem.
"""

import sys

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError:
    sys.exit("the kubernetes Python client is missing: run scripts/setup.sh (pip install kubernetes)")

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
batch = client.BatchV1Api()
custom = client.CustomObjectsApi()
NS = "default"
TJ = ("coxswain.dev", "v1alpha1", NS, "trainingjobs")


def check(condition, what):
    if not condition:
        sys.exit(f"python client: {what}")


def events_until(list_fn, *args, resource_version, stop, **kwargs):
    """Watch from resource_version until stop(type, object) is true; return the events seen."""
    seen = []
    w = watch.Watch()
    for event in w.stream(list_fn, *args, resource_version=resource_version, timeout_seconds=10, **kwargs):
        obj = event["object"]
        name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
        seen.append((event["type"], name))
        if stop(event["type"], name):
            w.stop()
    return seen


def pods():
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox",
                                                             env=[client.V1EnvVar(name="A", value="1")])]),
    )
    created = core.create_namespaced_pod(NS, pod)
    check(created.metadata.uid and created.metadata.resource_version, "create pod: no uid/resourceVersion")
    listed = core.list_namespaced_pod(NS, label_selector="app=py")
    check([p.metadata.name for p in listed.items] == ["py-pod"], f"list pods: {listed.items}")
    start = listed.metadata.resource_version
    patched = core.patch_namespaced_pod("py-pod", NS, {"metadata": {"labels": {"patched": "yes"}},
                                                       "spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}]}})
    check(patched.metadata.labels.get("patched") == "yes", "strategic patch: label")
    check([e.name for e in patched.spec.containers[0].env] == ["A", "B"], f"strategic patch merged env: {patched.spec.containers[0].env}")
    seen = events_until(core.list_namespaced_pod, NS, resource_version=start, stop=lambda t, n: t == "MODIFIED")
    check(("MODIFIED", "py-pod") in seen, f"watch resumed from {start}: {seen}")
    before_delete = core.read_namespaced_pod("py-pod", NS).metadata.resource_version
    core.delete_namespaced_pod("py-pod", NS)
    seen = events_until(core.list_namespaced_pod, NS, resource_version=before_delete, stop=lambda t, n: t == "DELETED")
    check(("DELETED", "py-pod") in seen, f"watch saw the delete: {seen}")
    try:
        core.read_namespaced_pod("py-pod", NS)
        check(False, "pod still there after delete")
    except ApiException as e:
        check(e.status == 404, f"read deleted pod: {e.status}")


def jobs():
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="py-job"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="busybox")]))),
    )
    created = batch.create_namespaced_job(NS, job)
    start = created.metadata.resource_version
    check([j.metadata.name for j in batch.list_namespaced_job(NS).items] == ["py-job"], "list jobs")
    patched = batch.patch_namespaced_job("py-job", NS, {"spec": {"backoffLimit": 1}})
    check(patched.spec.backoff_limit == 1, "patch job")
    seen = events_until(batch.list_namespaced_job, NS, resource_version=start, stop=lambda t, n: t == "MODIFIED")
    check(("MODIFIED", "py-job") in seen, f"watch jobs: {seen}")
    batch.delete_namespaced_job("py-job", NS, propagation_policy="Background")
    check(batch.list_namespaced_job(NS).items == [], "job deleted")


def training_jobs():
    body = {
        "apiVersion": "coxswain.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "py-tj"},
        "spec": {"replicaGroups": [{"name": "worker", "replicas": 2, "gpusPerReplica": 1,
                                    "template": {"spec": {"containers": [{"name": "t", "image": "trainer"}]}}}]},
    }
    created = custom.create_namespaced_custom_object(*TJ, body)
    start = created["metadata"]["resourceVersion"]
    listed = custom.list_namespaced_custom_object(*TJ)
    check([i["metadata"]["name"] for i in listed["items"]] == ["py-tj"], f"list trainingjobs: {listed}")
    patched = custom.patch_namespaced_custom_object(*TJ[:3], TJ[3], "py-tj", {"spec": {"queue": "research"}})
    check(patched["spec"]["queue"] == "research", f"patch trainingjob: {patched}")
    seen = events_until(custom.list_namespaced_custom_object, *TJ, resource_version=start,
                        stop=lambda t, n: t == "MODIFIED")
    check(("MODIFIED", "py-tj") in seen, f"watch trainingjobs: {seen}")
    got = custom.get_namespaced_custom_object(*TJ[:3], TJ[3], "py-tj")
    check(got["spec"]["replicaGroups"][0]["replicas"] == 2, "get trainingjob")
    try:
        bad = dict(body, metadata={"name": "bad"}, spec={"replicaGroups": [{"name": "w", "replicas": 0}]})
        custom.create_namespaced_custom_object(*TJ, bad)
        check(False, "invalid trainingjob accepted")
    except ApiException as e:
        check(e.status == 422 and "replicas" in e.body, f"invalid trainingjob: {e.status} {e.body}")
    custom.delete_namespaced_custom_object(*TJ[:3], TJ[3], "py-tj")
    check(custom.list_namespaced_custom_object(*TJ)["items"] == [], "trainingjob deleted")


pods()
jobs()
training_jobs()
print("python client: ok")
