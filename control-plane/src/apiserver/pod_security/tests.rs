//! Each check's reason and detail text, as upstream's tests state them, and the levels.

use serde_json::{Value, json};

use super::*;

fn pod(spec: Value) -> (Value, Value) {
    (json!({"name": "x"}), spec)
}

/// The message `level` gives for `spec` (empty when allowed).
fn message(level: Level, spec: Value) -> String {
    let (meta, spec) = pod(spec);
    describe(&evaluate(level, &meta, &spec))
}

fn c(name: &str, sc: Value) -> Value {
    json!({"name": name, "image": "busybox", "securityContext": sc})
}

#[test]
fn a_plain_pod_passes_baseline_and_fails_restricted() {
    let spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    assert_eq!(message(Level::Baseline, spec.clone()), "");
    assert_eq!(message(Level::Privileged, spec.clone()), "");
    assert_eq!(
        message(Level::Restricted, spec),
        "allowPrivilegeEscalation != false (container \"c\" must set \
         securityContext.allowPrivilegeEscalation=false), unrestricted capabilities \
         (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
         runAsNonRoot != true (pod or container \"c\" must set \
         securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set \
         securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
}

#[test]
fn a_hardened_pod_passes_restricted() {
    let sc = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                    "seccompProfile": {"type": "RuntimeDefault"}});
    let spec = json!({"containers": [c("c", sc)],
                      "volumes": [{"name": "d", "emptyDir": {}}]});
    assert_eq!(message(Level::Restricted, spec), "");
}

#[test]
fn host_namespaces_host_path_and_privileged_read_as_kubernetes_says() {
    let spec = json!({
        "hostNetwork": true, "hostPID": true,
        "containers": [c("c", json!({"privileged": true}))],
        "volumes": [{"name": "data", "hostPath": {"path": "/data"}}],
    });
    assert_eq!(
        message(Level::Baseline, spec),
        "host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"data\"), \
         privileged (container \"c\" must not set securityContext.privileged=true)"
    );
    assert_eq!(
        message(Level::Baseline, json!({"hostIPC": true, "containers": []})),
        "host namespaces (hostIPC=true)"
    );
}

#[test]
fn privileged_names_init_and_ephemeral_containers_too() {
    let spec = json!({
        "initContainers": [c("init", json!({"privileged": true}))],
        "containers": [c("app", json!({"privileged": false}))],
        "ephemeralContainers": [c("debug", json!({"privileged": true}))],
    });
    assert_eq!(
        message(Level::Baseline, spec),
        "privileged (containers \"init\", \"debug\" must not set \
         securityContext.privileged=true)"
    );
}

#[test]
fn capabilities_beyond_the_baseline_set_are_named_sorted() {
    let spec = json!({"containers": [
        c("a", json!({"capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}})),
        c("b", json!({"capabilities": {"add": ["NET_RAW", "KILL"]}})),
        c("ok", json!({"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}})),
    ]});
    assert_eq!(
        message(Level::Baseline, spec),
        "non-default capabilities (containers \"a\", \"b\" must not include \"NET_RAW\", \
         \"SYS_ADMIN\" in securityContext.capabilities.add)"
    );
}

#[test]
fn host_ports_are_named_and_port_zero_is_allowed() {
    let spec = json!({"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080},
                                {"containerPort": 81, "hostPort": 0}]},
        {"name": "b", "ports": [{"containerPort": 90, "hostPort": 10080}]},
    ]});
    assert_eq!(
        message(Level::Baseline, spec),
        "hostPort (containers \"a\", \"b\" use hostPorts 10080, 8080)"
    );
    let one =
        json!({"containers": [{"name": "a", "ports": [{"containerPort": 1, "hostPort": 9}]}]});
    assert_eq!(
        message(Level::Baseline, one),
        "hostPort (container \"a\" uses hostPort 9)"
    );
    let zero =
        json!({"containers": [{"name": "a", "ports": [{"containerPort": 1, "hostPort": 0}]}]});
    assert_eq!(message(Level::Baseline, zero), "");
}

#[test]
fn unconfined_apparmor_seccomp_and_selinux_are_refused() {
    let spec = json!({
        "securityContext": {"appArmorProfile": {"type": "Unconfined"},
                            "seccompProfile": {"type": "Unconfined"}},
        "containers": [c("c", json!({"seccompProfile": {"type": "Unconfined"},
                                     "seLinuxOptions": {"type": "spc_t", "user": "root"}}))],
    });
    assert_eq!(
        message(Level::Baseline, spec),
        "forbidden AppArmor profile (pod must not set AppArmor profile type to \"Unconfined\"), \
         seLinuxOptions (container \"c\" set forbidden securityContext.seLinuxOptions: type \
         \"spc_t\"; user may not be set), seccompProfile (pod and container \"c\" must not set \
         securityContext.seccompProfile.type to \"Unconfined\")"
    );
    let annotated = json!({"name": "x", "annotations": {
        "container.apparmor.security.beta.kubernetes.io/c": "unconfined"}});
    let spec = json!({"containers": [{"name": "c"}]});
    assert_eq!(
        describe(&evaluate(Level::Baseline, &annotated, &spec)),
        "forbidden AppArmor profile (annotation must not set AppArmor profile type to \
         \"container.apparmor.security.beta.kubernetes.io/c=\\\"unconfined\\\"\")"
    );
    let fine = json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"},
                                          "appArmorProfile": {"type": "Localhost"},
                                          "seLinuxOptions": {"type": "container_t"}},
                      "containers": [{"name": "c"}]});
    assert_eq!(message(Level::Baseline, fine), "");
}

#[test]
fn proc_mount_and_unsafe_sysctls_are_refused() {
    let spec = json!({
        "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"},
                                        {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                                        {"name": "vm.swappiness", "value": "1"}]},
        "containers": [c("c", json!({"procMount": "Unmasked"})),
                       c("d", json!({"procMount": "Default"}))],
    });
    assert_eq!(
        message(Level::Baseline, spec.clone()),
        "procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\"), \
         forbidden sysctls (kernel.msgmax, vm.swappiness)"
    );
    let mut own_users = spec;
    own_users["hostUsers"] = json!(false);
    assert_eq!(
        message(Level::Baseline, own_users),
        "forbidden sysctls (kernel.msgmax, vm.swappiness)"
    );
}

#[test]
fn restricted_replaces_the_overlapping_baseline_checks() {
    let sc = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                    "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                    "seccompProfile": {"type": "RuntimeDefault"}});
    let spec = json!({"containers": [c("c", sc)],
                      "volumes": [{"name": "h", "hostPath": {"path": "/"}},
                                  {"name": "n", "nfs": {"server": "s", "path": "/"}}]});
    assert_eq!(
        message(Level::Restricted, spec),
        "unrestricted capabilities (container \"c\" must not include \"SYS_ADMIN\" in \
         securityContext.capabilities.add), restricted volume types (volumes \"h\", \"n\" use \
         restricted volume types \"hostPath\", \"nfs\")"
    );
}

#[test]
fn run_as_root_is_named_in_restricted() {
    let sc = json!({"allowPrivilegeEscalation": false, "runAsUser": 0, "runAsNonRoot": false,
                    "capabilities": {"drop": ["ALL"]}});
    let spec = json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [c("c", sc)]});
    assert_eq!(
        message(Level::Restricted, spec),
        "runAsNonRoot != true (container \"c\" must not set securityContext.runAsNonRoot=false), \
         runAsUser=0 (container \"c\" must not set runAsUser=0)"
    );
    // A non-zero runAsUser satisfies runAsNonRoot.
    let sc = json!({"allowPrivilegeEscalation": false, "runAsUser": 1000,
                    "capabilities": {"drop": ["ALL"]}});
    let spec = json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [c("c", sc)]});
    assert_eq!(message(Level::Restricted, spec), "");
}

#[test]
fn namespace_labels_give_the_policies() {
    let ns = |labels: Value| json!({"metadata": {"name": "n", "labels": labels}});
    let p = NamespacePolicy::of_namespace(&ns(json!({})));
    assert_eq!(p.enforce.to_string(), "baseline:latest");
    assert_eq!(p.warn.to_string(), "baseline:latest");
    let p = NamespacePolicy::of_namespace(&ns(json!({ENFORCE_LABEL: "privileged"})));
    assert_eq!(p.enforce.level, Level::Privileged);
    assert_eq!(p.warn.level, Level::Privileged);
    let p = NamespacePolicy::of_namespace(&ns(json!({
        ENFORCE_LABEL: "baseline", ENFORCE_VERSION_LABEL: "v1.30", WARN_LABEL: "restricted"})));
    assert_eq!(p.enforce.to_string(), "baseline:v1.30");
    assert_eq!(p.warn.to_string(), "restricted:latest");
    let p = NamespacePolicy::of_namespace(&ns(json!({ENFORCE_LABEL: "bogus"})));
    assert_eq!(p.enforce.level, Level::Restricted, "fails closed");
    assert_eq!(
        NamespacePolicy::of_namespace(&Value::Null).enforce.level,
        DEFAULT_LEVEL
    );
}

#[test]
fn bad_namespace_labels_are_field_errors() {
    let ns = json!({"metadata": {"name": "n", "labels": {
        ENFORCE_LABEL: "lax", WARN_VERSION_LABEL: "1.30", AUDIT_LABEL: "restricted"}}});
    let errors = validate_namespace_labels(&ns);
    let fields: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.labels[pod-security.kubernetes.io/enforce]",
            "metadata.labels[pod-security.kubernetes.io/warn-version]"
        ]
    );
}

#[test]
fn templates_are_found_in_workloads_of_every_shape() {
    let bad = json!({"spec": {"hostPID": true, "containers": [{"name": "c"}]}});
    let cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": bad}}}});
    assert_eq!(pod_templates(&cronjob).len(), 1);
    let pytorch = json!({"spec": {"pytorchReplicaSpecs": {
        "Master": {"template": bad}, "Worker": {"template": bad}}}});
    assert_eq!(pod_templates(&pytorch).len(), 2);
    let training = json!({"spec": {"replicaGroups": [{"name": "w", "template": bad}]}});
    assert_eq!(pod_templates(&training).len(), 1);
    assert!(pod_templates(&json!({"spec": {"containers": []}})).is_empty());
}

#[test]
fn significant_pod_updates_are_spec_and_security_annotation_changes() {
    let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c"}]}});
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["a"] = json!("2");
    assert!(!is_significant_pod_update(&old, &relabelled));
    let mut reimaged = old.clone();
    reimaged["spec"]["containers"][0]["image"] = json!("other");
    assert!(is_significant_pod_update(&old, &reimaged));
    let mut annotated = old.clone();
    annotated["metadata"]["annotations"] =
        json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"});
    assert!(is_significant_pod_update(&old, &annotated));
}
