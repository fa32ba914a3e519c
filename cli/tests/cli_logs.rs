//! `cox logs` against a real `cox server` and `cox agent` (runc, `image: host`): the
//! whole log, `--tail`, `--timestamps`, `-c`, `-n`, `--previous` after a restart, `-f`
//! until the container exits, and one-line errors for what is wrong; and the agent's
//! `/metrics` with the running pod's and container's CPU and memory.

mod cluster;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::Cluster;

const PODS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: team}
spec:
  nodeName: n1
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: host, command: [/bin/sh, -c, 'echo one; echo two; echo three']}
---
apiVersion: v1
kind: Pod
metadata: {name: pair}
spec:
  nodeName: n1
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: a, image: host, command: [/bin/sh, -c, 'echo from-a']}
  - {name: b, image: host, command: [/bin/sh, -c, 'echo from-b']}
---
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  nodeName: n1
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: host, command: [/bin/sh, -c, 'echo attempt; exit 3']}
";

/// A pod that writes a line, then waits for the test to let it finish.
const TICKER: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  nodeName: n1
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: host
    command: [/bin/sh, -c, 'echo tick 1; while [ ! -e /tmp/cox-ticker-go ]; do sleep 0.1; done; echo tick 2']
";

#[test]
fn logs_reach_the_containers_through_the_server() {
    let cluster = Cluster::start();
    cluster.apply(PODS);
    cluster.wait_phase("team", "hello", "Succeeded");
    cluster.wait_phase("default", "pair", "Succeeded");

    assert_eq!(
        cluster.ok(&["logs", "hello", "-n", "team"]),
        "one\ntwo\nthree\n"
    );
    assert_eq!(
        cluster.ok(&["logs", "hello", "-n", "team", "--tail", "1"]),
        "three\n"
    );
    let stamped = cluster.ok(&["logs", "hello", "-n", "team", "--timestamps"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    for (line, text) in lines.iter().zip(["one", "two", "three"]) {
        let (time, rest) = line.split_once(' ').expect("a timestamp, then the line");
        assert_eq!(rest, text);
        assert!(
            time.len() >= 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{time:?} is not an RFC 3339 UTC time"
        );
    }
    assert_eq!(cluster.ok(&["logs", "pair", "-c", "b"]), "from-b\n");

    // What is wrong, in one line.
    let error = cluster.fails(&["logs", "hello"]);
    assert!(
        error.contains("hello") && error.contains("not found"),
        "{error}"
    );
    let error = cluster.fails(&["logs", "pair"]);
    assert!(
        error.contains("choose one of: [a b]") && error.contains("-c"),
        "{error}"
    );
    let error = cluster.fails(&["logs", "pair", "-c", "sidecar"]);
    assert!(error.contains("container sidecar is not valid"), "{error}");
    let error = cluster.fails(&["logs", "hello", "-n", "team", "--previous"]);
    assert!(error.contains("previous"), "{error}");
    assert_eq!(error.trim().lines().count(), 1, "{error}");

    // --previous: the instance before the last restart (after the 10 s back-off).
    cluster.eventually("crash to restart", || {
        let pod = cluster.pod("default", "crash")?;
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
        (restarts >= 1).then_some(())
    });
    assert_eq!(cluster.ok(&["logs", "crash", "--previous"]), "attempt\n");

    // -f prints what is there, keeps the stream open while the container runs, and ends
    // when it exits.
    std::fs::remove_file("/tmp/cox-ticker-go").ok();
    cluster.apply(TICKER);
    cluster.wait_phase("default", "ticker", "Running");
    let metrics = agent_metrics(&cluster);
    for line in [
        "container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"ticker\"} ",
        "container_cpu_usage_seconds_total{container=\"\",namespace=\"default\",pod=\"ticker\"} ",
        "container_memory_working_set_bytes{container=\"main\",namespace=\"default\",pod=\"ticker\"} ",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line:?} in the agent's /metrics:\n{metrics}"));
        let value: f64 = value.parse().expect("a number");
        assert!(value > 0.0, "{line}{value}");
    }
    let mut follow = Command::new(env!("CARGO_BIN_EXE_cox"))
        .args(["logs", "-f", "ticker"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .expect("cox logs -f starts");
    // A reader thread, so a stream that never delivers fails the test instead of hanging it.
    let mut stdout = follow.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<u8>();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut stdout, &mut byte).is_ok_and(|n| n == 1) {
            if tx.send(byte[0]).is_err() {
                break;
            }
        }
    });
    let read_until = |text: &str| -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).ends_with(text) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(byte) => seen.push(byte),
                Err(e) => panic!(
                    "cox logs -f: no {text:?} ({e}); got {:?}\nagent log:\n{}",
                    String::from_utf8_lossy(&seen),
                    cluster.agent_log()
                ),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    assert_eq!(read_until("tick 1\n"), "tick 1\n");
    assert!(
        follow.try_wait().expect("try_wait").is_none(),
        "cox logs -f ended while the container still runs"
    );
    // The container's /tmp is the host's through an overlay: the file must appear in
    // its root filesystem, so write it there.
    let rootfs = container_rootfs(&cluster, "ticker");
    std::fs::write(rootfs.join("tmp/cox-ticker-go"), "").expect("signal file written");
    assert_eq!(read_until("tick 2\n"), "tick 2\n");
    let limit = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = follow.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < limit, "cox logs -f did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());

    cluster.delete_all_pods();
}

/// `GET /metrics` from the agent, at the port its Node reports.
fn agent_metrics(cluster: &Cluster) -> String {
    use std::io::{Read, Write};
    let node: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["get", "node", cluster::NODE, "-o", "json"]))
            .expect("node JSON");
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("the agent's port");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
}

/// The merged root filesystem of the pod's only container (`<root>/containers/<id>/rootfs`).
fn container_rootfs(cluster: &Cluster, pod: &str) -> std::path::PathBuf {
    let pod = cluster.pod("default", pod).expect("the pod exists");
    let uid = pod["metadata"]["uid"].as_str().expect("a uid");
    let containers = cluster.agent_root.join("containers");
    let entry = std::fs::read_dir(&containers)
        .expect("containers dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(uid))
        .expect("the pod's container directory");
    entry.path().join("rootfs")
}
