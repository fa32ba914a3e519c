//! `cox-csi --metrics-listen` (root: real loop devices and mounts): the real
//! binary is scraped over loopback, the text passes `promtool check
//! metrics`, and the RPC counts by method and code, the latency histogram
//! and the volume gauges follow a create/stage/publish/delete round and
//! refused calls.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use coxswain_csi::CsiClient;
use coxswain_proto::csi::v1::{
    CapacityRange, CreateSnapshotRequest, CreateVolumeRequest, DeleteVolumeRequest,
    NodeStageVolumeRequest,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const MIB: i64 = 1 << 20;

/// Kills the driver when the test ends, however it ends.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// `GET /metrics` over a plain TCP connection; the body of a 200.
async fn scrape(addr: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Ok(body.to_string())
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            let mut found: Vec<String> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            found.sort();
            (metric == name && found == wanted).then(|| value.parse().ok())?
        })
}

fn handled(scrape: &str, service: &str, method: &str, code: &str) -> Option<f64> {
    sample(
        scrape,
        "grpc_server_handled_total",
        &[
            ("grpc_type", "unary"),
            ("grpc_service", service),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
}

/// The real `promtool check metrics`; a missing promtool fails the test
/// (scripts/setup.sh installs Debian's `prometheus` package).
fn promtool_check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "PROMTOOL IS MISSING ({e}): scripts/setup.sh installs Debian's prometheus package"
            )
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(scrape.as_bytes())
        .expect("writing the scrape to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- scrape ---\n{scrape}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

fn create_request(name: &str, bytes: i64, backing: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![writer()],
        parameters: HashMap::from([("backing".to_string(), backing.to_string())]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_and_volume_metrics_follow_the_drivers_work() -> Result<()> {
    require_root();
    let tmp = tempfile::Builder::new()
        .prefix("cox-csi-metrics")
        .tempdir()?;
    let _guard = Guard(tmp.path().to_path_buf());
    let endpoint = format!("unix://{}", tmp.path().join("csi.sock").display());
    let addr = format!("127.0.0.1:{}", free_port());
    let _driver = Driver(
        Command::new(env!("CARGO_BIN_EXE_cox-csi"))
            .args(["--endpoint", &endpoint, "--node-id", "metrics-node"])
            .args(["--capacity", "1Gi", "--metrics-listen", &addr])
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("starting cox-csi")?,
    );
    let c = CsiClient::wait_ready(&endpoint, Duration::from_secs(20)).await?;
    let path = |p: &str| tmp.path().join(p).display().to_string();

    let text = scrape(&addr).await?;
    promtool_check(&text);
    assert!(handled(&text, "csi.v1.Identity", "Probe", "OK").is_some_and(|n| n >= 1.0));
    assert_eq!(
        sample(&text, "coxswain_csi_volumes", &[("backing", "image")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "coxswain_csi_capacity_bytes", &[]),
        Some(1073741824.0)
    );
    assert_eq!(
        sample(&text, "coxswain_csi_available_bytes", &[]),
        Some(1073741824.0)
    );

    // Two volumes, one of each backing; the image one staged and published.
    let mut controller = c.controller.clone();
    let image = controller
        .create_volume(create_request("img", 16 * MIB, "image"))
        .await?
        .into_inner()
        .volume
        .context("a volume")?
        .volume_id;
    let dir = controller
        .create_volume(create_request("dir", 8 * MIB, "directory"))
        .await?
        .into_inner()
        .volume
        .context("a volume")?
        .volume_id;
    let (staging, target) = (path("staging"), path("target"));
    stage(&c, &image, &staging).await?;
    publish(&c, &image, &staging, &target, false).await?;
    // Refused calls, each with the code the spec gives it.
    let refused = controller
        .delete_volume(DeleteVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = c
        .node
        .clone()
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: "cox-missing".into(),
            staging_target_path: path("nowhere"),
            volume_capability: Some(writer()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    let refused = controller
        .create_snapshot(CreateSnapshotRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);

    let text = scrape(&addr).await?;
    promtool_check(&text);
    let (ctl, node) = ("csi.v1.Controller", "csi.v1.Node");
    assert_eq!(handled(&text, ctl, "CreateVolume", "OK"), Some(2.0));
    assert_eq!(
        handled(&text, ctl, "DeleteVolume", "InvalidArgument"),
        Some(1.0)
    );
    assert_eq!(handled(&text, ctl, "DeleteVolume", "OK"), None);
    assert_eq!(handled(&text, node, "NodeStageVolume", "OK"), Some(1.0));
    assert_eq!(
        handled(&text, node, "NodeStageVolume", "NotFound"),
        Some(1.0)
    );
    assert_eq!(handled(&text, node, "NodePublishVolume", "OK"), Some(1.0));
    assert_eq!(
        handled(&text, ctl, "CreateSnapshot", "Unimplemented"),
        Some(1.0)
    );
    let create_latency = [
        ("grpc_type", "unary"),
        ("grpc_service", ctl),
        ("grpc_method", "CreateVolume"),
    ];
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_count", &create_latency),
        Some(2.0)
    );
    let mut inf = create_latency.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_bucket", &inf),
        Some(2.0)
    );
    assert!(
        sample(&text, "grpc_server_handling_seconds_sum", &create_latency).is_some_and(|s| s > 0.0)
    );
    let volumes =
        |text: &str, backing: &str| sample(text, "coxswain_csi_volumes", &[("backing", backing)]);
    let bytes = |text: &str, backing: &str| {
        sample(
            text,
            "coxswain_csi_volume_provisioned_bytes",
            &[("backing", backing)],
        )
    };
    assert_eq!(
        (volumes(&text, "image"), volumes(&text, "directory")),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(bytes(&text, "image"), Some((16 * MIB) as f64));
    assert_eq!(bytes(&text, "directory"), Some((8 * MIB) as f64));
    assert_eq!(sample(&text, "coxswain_csi_volumes_staged", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "coxswain_csi_volumes_published", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "coxswain_csi_available_bytes", &[]),
        Some((1073741824 - 24 * MIB) as f64)
    );
    assert_eq!(
        sample(&text, "coxswain_csi_capacity_bytes", &[]),
        Some(1073741824.0)
    );

    // Everything undone: the gauges go back, the counters keep counting.
    unpublish(&c, &image, &target).await?;
    unstage(&c, &image, &staging).await?;
    delete(&c, &image).await?;
    delete(&c, &dir).await?;
    let text = scrape(&addr).await?;
    promtool_check(&text);
    assert_eq!(
        (volumes(&text, "image"), volumes(&text, "directory")),
        (Some(0.0), Some(0.0))
    );
    assert_eq!(bytes(&text, "image"), Some(0.0));
    assert_eq!(sample(&text, "coxswain_csi_volumes_staged", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "coxswain_csi_volumes_published", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "coxswain_csi_available_bytes", &[]),
        Some(1073741824.0)
    );
    assert_eq!(handled(&text, ctl, "DeleteVolume", "OK"), Some(2.0));
    assert_eq!(handled(&text, ctl, "CreateVolume", "OK"), Some(2.0));
    Ok(())
}

#[test]
fn a_listen_address_in_use_is_refused_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cox-csi"))
        .args(["--capacity", "1Gi", "--metrics-listen", &addr])
        .arg("--endpoint")
        .arg(format!("unix://{}", tmp.path().join("csi.sock").display()))
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--metrics-listen") && stderr.contains(&addr),
        "{stderr}"
    );
}
