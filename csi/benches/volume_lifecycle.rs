//! Measures `cox-csi` for real (root): CreateVolume + NodeStageVolume +
//! NodePublishVolume time per volume (p50/p99), and sequential read
//! throughput through a published volume against the same read of a file
//! on the host filesystem that holds the driver's state directory.
//!
//! `cargo bench -p coxswain-csi --bench volume_lifecycle` (as root).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coxswain_csi::CsiClient;
use coxswain_proto::csi::v1::volume_capability::access_mode::Mode;
use coxswain_proto::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use coxswain_proto::csi::v1::*;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

const VOLUMES: usize = 50;
const READ_BYTES: usize = 256 << 20;
const ROUNDS: usize = 5;

fn writer() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Drops `path` from the page cache.
fn evict(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)?;
    file.sync_all()?;
    posix_fadvise(file.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)?;
    Ok(())
}

/// Reads `path` once in 1 MiB chunks; MiB/s.
fn read_mib_s(path: &Path) -> anyhow::Result<f64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0usize;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

fn write_file(path: &Path) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..READ_BYTES / chunk.len() {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Cold read throughput of `path` (evicted from the page cache, with
/// `extra`, first), then warm (best of three).
fn cold_and_warm(path: &Path, extra: Option<&Path>) -> anyhow::Result<(f64, f64)> {
    evict(path)?;
    if let Some(extra) = extra {
        evict(extra)?;
    }
    let cold = read_mib_s(path)?;
    let warm = (0..3)
        .map(|_| read_mib_s(path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cold, warm.into_iter().fold(0.0, f64::max)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        anyhow::bail!(
            "the benchmark makes loop devices and mounts: run it as root (see scripts/setup.sh)"
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("cox-csi-bench")
        .tempdir_in("/var/tmp")?;
    let endpoint = format!("unix://{}", tmp.path().join("csi.sock").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_cox-csi"))
        .args([
            "--endpoint",
            &endpoint,
            "--node-id",
            "bench",
            "--capacity",
            "64Gi",
        ])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let c = CsiClient::wait_ready(&endpoint, Duration::from_secs(20)).await?;
    let (mut ctl, mut node) = (c.controller.clone(), c.node.clone());
    let mut times = Vec::new();
    let mut creates = Vec::new();
    let mut made = Vec::new();
    for i in 0..=VOLUMES {
        let size = if i == VOLUMES {
            2 * READ_BYTES as i64
        } else {
            16 << 20
        };
        let staging = tmp
            .path()
            .join(format!("staging-{i}"))
            .display()
            .to_string();
        let target = tmp.path().join(format!("pod-{i}")).display().to_string();
        let start = Instant::now();
        let req = CreateVolumeRequest {
            name: format!("bench-{i}"),
            capacity_range: Some(CapacityRange {
                required_bytes: size,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![writer()],
            parameters: HashMap::new(),
            ..Default::default()
        };
        let id = ctl
            .create_volume(req)
            .await?
            .into_inner()
            .volume
            .unwrap_or_default()
            .volume_id;
        let created = start.elapsed();
        let stage = NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.clone(),
            volume_capability: Some(writer()),
            ..Default::default()
        };
        node.node_stage_volume(stage).await?;
        let publish = NodePublishVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.clone(),
            target_path: target.clone(),
            volume_capability: Some(writer()),
            ..Default::default()
        };
        node.node_publish_volume(publish).await?;
        if i < VOLUMES {
            times.push(start.elapsed());
            creates.push(created);
        }
        made.push((id, staging, target));
    }
    times.sort();
    creates.sort();
    println!(
        "create+stage+publish, {VOLUMES} volumes of 16 MiB: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!(
        "  of which CreateVolume (sparse file + mkfs.ext4): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&creates, 0.5).as_secs_f64() * 1e3,
        percentile(&creates, 0.99).as_secs_f64() * 1e3
    );

    let (id, _, target) = made.last().cloned().unwrap_or_default();
    let in_volume = Path::new(&target).join("dataset.bin");
    let on_host = tmp.path().join("dataset.bin");
    write_file(&in_volume)?;
    write_file(&on_host)?;
    let image = tmp.path().join(format!("state/images/{id}.img"));
    // Alternate volume and host reads so that both see the same machine load.
    let (mut vc, mut vw, mut hc, mut hw) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (cold, warm) = cold_and_warm(&in_volume, Some(&image))?;
        vc.push(cold);
        vw.push(warm);
        let (cold, warm) = cold_and_warm(&on_host, None)?;
        hc.push(cold);
        hw.push(warm);
    }
    let (vol_cold, vol_warm, host_cold, host_warm) =
        (median(vc), median(vw), median(hc), median(hw));
    println!(
        "sequential read of {} MiB, median of {ROUNDS}: volume cold {vol_cold:.0} MiB/s, host cold {host_cold:.0} MiB/s \
         (ratio {:.2}); volume warm {vol_warm:.0} MiB/s, host warm {host_warm:.0} MiB/s (ratio {:.2})",
        READ_BYTES >> 20,
        vol_cold / host_cold,
        vol_warm / host_warm
    );

    for (id, staging, target) in made {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target,
        })
        .await?;
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging,
        })
        .await?;
        ctl.delete_volume(DeleteVolumeRequest {
            volume_id: id,
            ..Default::default()
        })
        .await?;
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}
