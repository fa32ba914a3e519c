//! Node client-certificate rotation end to end: `cox server --cluster-signing-duration 40s`
//! signs short-lived node certificates; an agent that joined with a bootstrap token renews
//! its own before it expires — asking as `system:node:<name>`, with its current certificate
//! — and goes on with the new one: past the first certificate's notAfter (after which the
//! server refuses it even on an open connection) the node's Lease is still renewed, the
//! node stays Ready and its pod keeps running, never restarted.

mod tls_support;

use std::time::{Duration, SystemTime};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use tls_support::*;

const NODE: &str = "rotor";

/// notBefore, notAfter and serial of a PEM certificate.
fn validity(pem: &[u8]) -> (SystemTime, SystemTime, String) {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).unwrap();
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp() as u64)
    };
    (
        time(cert.validity().not_before),
        time(cert.validity().not_after),
        cert.raw_serial_as_string(),
    )
}

fn rfc3339(text: &str) -> SystemTime {
    let t: jiff::Timestamp = text.parse().unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.as_nanosecond() as u64)
}

/// The `timestamp` of the first JSON log line with `message` after `skip` such lines.
fn logged_at(log: &str, message: &str, skip: usize) -> Option<SystemTime> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .nth(skip)
        .and_then(|l| l["timestamp"].as_str().map(rfc3339))
}

/// The status of a GET; `None` when no answer came (a refused handshake).
async fn status_of(client: &reqwest::Client, url: &str) -> Option<u16> {
    let response = client.get(url).send().await.ok()?;
    Some(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_renews_its_certificate_and_keeps_working_with_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--cluster-signing-duration", "40s"]);
    let token = create_token(&server, "24h");
    let (mut agent, log_path) = spawn_agent(
        dir.path(),
        &server,
        NODE,
        &[
            "--bootstrap-token".to_string(),
            token,
            "--log-format".into(),
            "json".into(),
        ],
    );
    let result = check(&server, dir.path(), &log_path).await;
    // The agent leaves pods running when it stops, as a kubelet does: remove the pod first.
    let removed = remove_pod(&server, "sleeper").await;
    let _ = (agent.kill(), agent.wait());
    assert!(removed, "the agent stopped the sleeper pod");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Err(message) = result {
        panic!("{message}\nagent log:\n{log}");
    }
    // CSR created (the agent's second request) → first session registered with the new
    // certificate.
    let asked = logged_at(&log, "asked for the node's client certificate", 1).unwrap();
    let in_use = logged_at(&log, "reconnected with the rotated client certificate", 0).unwrap();
    let took = in_use.duration_since(asked).unwrap();
    eprintln!("renewal: CSR created -> new certificate in use in {took:?}");
    for line in log
        .lines()
        .filter(|l| l.contains("certificate") || l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("{line}");
    }
}

/// Deletes pod `name` and waits (up to 30 s) until the agent has stopped it and it is gone.
async fn remove_pod(server: &Server, name: &str) -> bool {
    let admin = client(server, None);
    let pod = format!("{}/api/v1/namespaces/default/pods/{name}", server.url);
    let _ = send(&admin, Method::DELETE, &pod, Some("tok-root"), None).await;
    for _ in 0..300 {
        if get(&admin, &pod, Some("tok-root")).await.0 == 404 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn check(
    server: &Server,
    dir: &std::path::Path,
    log: &std::path::Path,
) -> Result<(), String> {
    let admin = client(server, None);
    let url = &server.url;
    if !wait_ready(server, NODE).await {
        return Err("the node did not join".into());
    }
    let pki = dir.join(format!("agent-{NODE}/pki"));
    let first_pem = std::fs::read(pki.join("node.crt")).unwrap();
    let first_key = std::fs::read(pki.join("node.key")).unwrap();
    let (first_from, first_until, first_serial) = validity(&first_pem);
    assert_eq!(
        first_until.duration_since(first_from).unwrap(),
        Duration::from_secs(44),
        "signed for --cluster-signing-duration 40s, backdated a tenth"
    );

    let pod = json!({"metadata": {"name": "sleeper"}, "spec": {
        "nodeName": NODE, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "host", "command": ["sleep", "3600"]}],
    }});
    let pods = format!("{url}/api/v1/namespaces/default/pods");
    let (code, body) = send(
        &admin,
        Method::POST,
        &pods,
        Some("tok-root"),
        Some(("application/json", pod)),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let mut started = None;
    for _ in 0..300 {
        let (_, pod) = get(&admin, &format!("{pods}/sleeper"), Some("tok-root")).await;
        if pod["status"]["phase"] == "Running" {
            started = Some(pod["status"]["containerStatuses"][0]["containerID"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let container = started.ok_or("the pod did not start")?;

    // The first certificate, on a connection kept open while it expires.
    let old = client(server, Some(&[first_pem.clone(), first_key].concat()));
    let own_node = format!("{url}/api/v1/nodes/{NODE}");
    assert_eq!(
        status_of(&old, &own_node).await,
        Some(200),
        "the first certificate works while valid"
    );

    // Until the first certificate has expired and the Lease was renewed after that.
    let lease_url =
        format!("{url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}");
    let mut rotated = None;
    let mut refused_after_expiry = false;
    for _ in 0..1200 {
        let (_, node) = get(&admin, &own_node, Some("tok-root")).await;
        let ready = node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let (_, pod) = get(&admin, &format!("{pods}/sleeper"), Some("tok-root")).await;
        let status = &pod["status"]["containerStatuses"][0];
        if !ready
            || pod["status"]["phase"] != "Running"
            || status["containerID"] != container
            || status["restartCount"] != 0
        {
            return Err(format!(
                "node Ready: {ready}; pod: {}",
                serde_json::to_string_pretty(&pod["status"]).unwrap()
            ));
        }
        let now_pem = std::fs::read(pki.join("node.crt")).unwrap_or_default();
        if rotated.is_none() && !now_pem.is_empty() && validity(&now_pem).2 != first_serial {
            rotated = Some(now_pem);
        }
        let code = status_of(&old, &own_node).await;
        if SystemTime::now() > first_until + Duration::from_secs(1) {
            refused_after_expiry |= code == Some(401);
        }
        let (_, lease) = get(&admin, &lease_url, Some("tok-root")).await;
        let renewed = lease["spec"]["renewTime"].as_str().map(rfc3339);
        if rotated.is_some()
            && refused_after_expiry
            && renewed.is_some_and(|t| t > first_until + Duration::from_secs(1))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rotated = rotated.ok_or("node.crt was never replaced")?;
    let (new_from, new_until, new_serial) = validity(&rotated);
    assert!(
        new_until > first_until && new_from >= first_from,
        "a later certificate"
    );
    let (_, lease) = get(&admin, &lease_url, Some("tok-root")).await;
    let renewed = lease["spec"]["renewTime"].as_str().map(rfc3339);
    assert!(
        renewed.is_some_and(|t| t > first_until),
        "the Lease was renewed after the first certificate expired: {lease}"
    );
    assert!(
        refused_after_expiry,
        "the expired first certificate is refused on its open connection, so only the new one can have renewed the Lease"
    );

    // The renewal's request was made by the node itself, with its certificate.
    let csrs = format!("{url}/apis/certificates.k8s.io/v1/certificatesigningrequests");
    let (_, list) = get(&admin, &csrs, Some("tok-root")).await;
    let issued = |csr: &Value| {
        csr["status"]["certificate"]
            .as_str()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .map(|pem| validity(&pem).2)
    };
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let renewal = items
        .iter()
        .find(|csr| issued(csr).as_deref() == Some(new_serial.as_str()))
        .ok_or_else(|| format!("no request was signed with serial {new_serial}: {list}"))?;
    assert_eq!(
        renewal["spec"]["username"],
        format!("system:node:{NODE}"),
        "{renewal}"
    );
    let join = items
        .iter()
        .find(|csr| issued(csr).as_deref() == Some(first_serial.as_str()))
        .ok_or("the join's request is listed")?;
    assert!(
        join["spec"]["username"]
            .as_str()
            .is_some_and(|u| u.starts_with("system:bootstrap:")),
        "{join}"
    );
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(text.contains("node client certificate rotated"), "{text}");
    Ok(())
}

/// An agent whose stored certificate has expired joins again with its bootstrap token
/// (without it, it would dial with the expired one for ever and never become Ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_stored_certificate_is_replaced_by_joining_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let token = create_token(&server, "24h");
    let node = "lapsed";
    let pki = dir.path().join(format!("agent-{node}/pki"));
    std::fs::create_dir_all(&pki).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&key).unwrap().pem();
    std::fs::write(pki.join("node.crt"), &expired).unwrap();
    std::fs::write(pki.join("node.key"), key.serialize_pem()).unwrap();

    let (mut agent, log) = spawn_agent(
        dir.path(),
        &server,
        node,
        &["--bootstrap-token".to_string(), token],
    );
    let ready = wait_ready(&server, node).await;
    let _ = (agent.kill(), agent.wait());
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(ready, "the node joined again:\n{log}");
    assert!(log.contains("expired at 2021-01-01"), "{log}");
    let renewed = std::fs::read(pki.join("node.crt")).unwrap();
    let (_, until, _) = validity(&renewed);
    assert!(until > SystemTime::now(), "a valid certificate replaced it");
}

/// A bad `--cluster-signing-duration` is refused in one line naming the flag.
#[test]
fn a_bad_signing_duration_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["1y", "-5m", "0s", "ten"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cox"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .arg(format!("--cluster-signing-duration={bad}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: {stderr}");
        assert!(
            stderr.contains("--cluster-signing-duration"),
            "{bad}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{bad}: {stderr}");
    }
}
