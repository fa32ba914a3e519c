//! Claims end to end on the built binaries: `cox server` (scheduler, volume controller,
//! node service), `cox agent --csi-driver` and `cox-csi` (image-backed ext4 volumes on
//! loop devices). A `WaitForFirstConsumer` claim is provisioned on the node the scheduler
//! picks for its pod, the pod writes to it and hits ENOSPC past the claim's size, a second
//! pod reads the data back, and deleting the claim deletes the volume (reclaim `Delete`)
//! with nothing left mounted or attached. A claim of an unknown class and one asking for
//! an access mode the driver lacks are told why in Events. Needs root.

mod cluster;

use cluster::{CSI_DRIVER, Cluster};
use serde_json::Value;

const STORAGE: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local}
provisioner: csi.coxswain.dev
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  storageClassName: local
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
"#;

/// A pod (scheduled, not pinned) running `script` with claim `data` at /data.
fn pod(name: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: host
    command: [/bin/sh, -c, '{script}']
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"#
    )
}

fn get(cluster: &Cluster, args: &[&str]) -> Option<Value> {
    let out = cluster.cox(args);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
}

/// The messages of the Events about `name` with `reason`.
fn events(cluster: &Cluster, name: &str, reason: &str) -> Vec<String> {
    let list = get(cluster, &["get", "events", "-n", "default", "-o", "json"]).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// Mount points and loop devices of anything under the test's directory.
fn attached(cluster: &Cluster) -> Vec<String> {
    let dir = cluster.dir.path().display().to_string();
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir) && m.contains("csi"))
        .map(str::to_string)
        .collect();
    let loops = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap();
    found.extend(
        String::from_utf8_lossy(&loops.stdout)
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_string),
    );
    found
}

#[test]
fn a_claim_is_provisioned_where_its_pod_runs_keeps_its_data_and_goes_with_its_volume() {
    let cluster = Cluster::start_with_csi("256Mi");
    cluster.apply(STORAGE);
    cluster.apply(&pod(
        "writer",
        "echo kept > /data/hello && sync; dd if=/dev/zero of=/data/big bs=1M count=32 2>&1 | head -1; rm -f /data/big",
    ));
    let writer = cluster.wait_phase("default", "writer", "Succeeded");
    assert_eq!(writer["spec"]["nodeName"], cluster::NODE);
    let log = cluster.ok(&["logs", "writer"]);
    assert!(log.contains("No space left on device"), "{log}");

    let claim = get(
        &cluster,
        &["get", "pvc", "data", "-n", "default", "-o", "json"],
    )
    .unwrap();
    assert_eq!(claim["status"]["phase"], "Bound", "{claim:#}");
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        cluster::NODE
    );
    let volume_name = claim["spec"]["volumeName"].as_str().unwrap().to_string();
    let volume = get(&cluster, &["get", "pv", &volume_name, "-o", "json"]).unwrap();
    assert_eq!(volume["spec"]["csi"]["driver"], CSI_DRIVER);
    assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Delete");

    // Another pod finds the data.
    cluster.ok(&["delete", "pod", "writer"]);
    cluster.apply(&pod("reader", "cat /data/hello"));
    cluster.wait_phase("default", "reader", "Succeeded");
    assert_eq!(cluster.ok(&["logs", "reader"]).trim(), "kept");
    cluster.delete_all_pods();

    // Deleting the claim deletes the volume: the object, and the driver's volume.
    cluster.ok(&["delete", "pvc", "data", "-n", "default"]);
    cluster.eventually("the released volume to be deleted", || {
        get(&cluster, &["get", "pv", &volume_name, "-o", "json"])
            .is_none()
            .then_some(())
    });
    cluster.eventually("nothing of the volume mounted or attached", || {
        attached(&cluster).is_empty().then_some(())
    });
}

#[test]
fn claims_the_cluster_cannot_provision_say_why() {
    let cluster = Cluster::start_with_csi("256Mi");
    cluster.apply(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local}
provisioner: csi.coxswain.dev
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: nowhere, namespace: default}
spec:
  storageClassName: no-such-class
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared, namespace: default}
spec:
  storageClassName: local
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: sharer, namespace: default}
spec:
  containers:
  - {name: main, image: host, command: [/bin/true], volumeMounts: [{name: d, mountPath: /d}]}
  volumes:
  - {name: d, persistentVolumeClaim: {claimName: shared}}
"#,
    );
    let unknown = cluster.eventually("the unknown class to be reported", || {
        events(&cluster, "nowhere", "ProvisioningFailed")
            .into_iter()
            .next()
    });
    assert!(unknown.contains("no-such-class"), "{unknown}");
    let refused = cluster.eventually("the driver's refusal to be reported", || {
        events(&cluster, "shared", "ProvisioningFailed")
            .into_iter()
            .next()
    });
    assert!(refused.contains("local"), "{refused}");
    let claim = get(
        &cluster,
        &["get", "pvc", "shared", "-n", "default", "-o", "json"],
    )
    .unwrap();
    assert_eq!(claim["status"]["phase"], "Pending");
    // A zero-size claim is refused by the API, naming the field.
    let file = cluster.dir.path().join("zero.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: zero, namespace: default}\n\
         spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: \"0\"}}}\n",
    )
    .unwrap();
    let err = cluster.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(err.contains("spec.resources.requests[storage]"), "{err}");
    cluster.delete_all_pods();
}

/// p50 and p99 of `samples` (milliseconds), sorted in place.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// The MB/s figure of a `dd` summary line (`... copied, 0.1 s, 640 MB/s`).
fn dd_rate(output: &str) -> String {
    output
        .lines()
        .find(|l| l.contains("copied"))
        .and_then(|l| l.rsplit(", ").next())
        .unwrap_or("?")
        .to_string()
}

#[test]
#[ignore = "a measurement, run by hand: cargo test -p coxswain-cli --test volumes_e2e -- --ignored --nocapture"]
fn measure_volume_start_and_dataset_read_throughput() {
    let cluster = Cluster::start_with_csi("2Gi");
    cluster.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\n\
         provisioner: csi.coxswain.dev\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    // Pod create → Succeeded, with a fresh claim (provision + stage + publish) and without.
    let rounds = 20;
    let (mut with_volume, mut without) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        for claimed in [true, false] {
            let name = format!("p{i}-{claimed}");
            let mut manifest = format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n\
                 spec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: host\n    command: [/bin/true]\n"
            );
            if claimed {
                manifest = format!(
                    "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: c{i}, namespace: default}}\n\
                     spec: {{storageClassName: local, accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 16Mi}}}}}}\n---\n\
                     {manifest}    volumeMounts: [{{name: d, mountPath: /d}}]\n  volumes:\n  - {{name: d, persistentVolumeClaim: {{claimName: c{i}}}}}\n"
                );
            }
            let started = std::time::Instant::now();
            cluster.apply(&manifest);
            cluster.wait_phase("default", &name, "Succeeded");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if claimed {
                with_volume.push(ms);
            } else {
                without.push(ms);
            }
        }
    }
    let (p50v, p99v) = percentiles(&mut with_volume);
    let (p50n, p99n) = percentiles(&mut without);
    println!(
        "pod create -> Succeeded with a new 16Mi claim ({rounds}): p50 {p50v:.0} ms, p99 {p99v:.0} ms"
    );
    println!(
        "pod create -> Succeeded without a volume ({rounds}): p50 {p50n:.0} ms, p99 {p99n:.0} ms"
    );
    cluster.delete_all_pods();

    // Dataset read: 256 MiB written once, read cold inside a pod and on the host.
    cluster.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: big, namespace: default}\n\
         spec: {storageClassName: local, accessModes: [ReadWriteOnce], resources: {requests: {storage: 300Mi}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: fill, namespace: default}\n\
         spec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: host\n\
         \x20   command: [/bin/sh, -c, 'dd if=/dev/urandom of=/d/data bs=1M count=256 status=none && sync']\n\
         \x20   volumeMounts: [{name: d, mountPath: /d}]\n  volumes:\n  - {name: d, persistentVolumeClaim: {claimName: big}}\n",
    );
    cluster.wait_phase("default", "fill", "Succeeded");
    let host_file = cluster.dir.path().join("host-data");
    let made = std::process::Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=256", "status=none"])
        .arg(format!("of={}", host_file.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let drop_caches = || {
        std::process::Command::new("sync").status().unwrap();
        std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    };
    drop_caches();
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: read, namespace: default}\n\
         spec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: host\n\
         \x20   command: [/bin/sh, -c, 'dd if=/d/data of=/dev/null bs=1M']\n\
         \x20   volumeMounts: [{name: d, mountPath: /d, readOnly: true}]\n  volumes:\n  - {name: d, persistentVolumeClaim: {claimName: big, readOnly: true}}\n",
    );
    cluster.wait_phase("default", "read", "Succeeded");
    let in_pod = dd_rate(&cluster.ok(&["logs", "read"]));
    drop_caches();
    let host = std::process::Command::new("dd")
        .arg(format!("if={}", host_file.display()))
        .args(["of=/dev/null", "bs=1M"])
        .output()
        .unwrap();
    let on_host = dd_rate(&String::from_utf8_lossy(&host.stderr));
    println!(
        "256 MiB sequential read, cold cache: in a pod from the claim {in_pod}, on the host {on_host}"
    );
    cluster.delete_all_pods();
}
