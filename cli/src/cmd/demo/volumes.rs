//! The example job's volumes: the checkpoint and dataset claims, the Job that fills the
//! dataset, and cleaning them up between runs.

use super::*;

pub(super) fn claim_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{name}")
}

pub(super) fn dataset_job_path() -> String {
    format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{DATASET_JOB}")
}

/// Deletes the dataset Job and both claims, and waits until they and the claims' volumes
/// are gone (the agent deletes each volume with the driver: reclaim policy Delete); false
/// when there was nothing to delete.
pub(super) async fn delete_volumes(client: &ApiClient) -> anyhow::Result<bool> {
    let background = Some((
        "application/json",
        serde_json::to_vec(&json!({"propagationPolicy": "Background"}))?,
    ));
    let job = client
        .send(
            Method::DELETE,
            &dataset_job_path(),
            "application/json",
            background,
        )
        .await?;
    let mut deleted = job.status.is_success();
    let mut volumes = Vec::new();
    for name in [CHECKPOINT_CLAIM, DATASET_CLAIM] {
        let claim = client
            .send(Method::GET, &claim_path(name), "application/json", None)
            .await?;
        if !claim.status.is_success() {
            continue;
        }
        volumes.extend(
            claim.body["spec"]["volumeName"]
                .as_str()
                .map(str::to_string),
        );
        client
            .send(Method::DELETE, &claim_path(name), "application/json", None)
            .await?;
        deleted = true;
    }
    let gone = |path: String| async move {
        let reply = client
            .send(Method::GET, &path, "application/json", None)
            .await?;
        anyhow::Ok(reply.status == reqwest::StatusCode::NOT_FOUND)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut all_gone = gone(dataset_job_path()).await?;
        for name in [CHECKPOINT_CLAIM, DATASET_CLAIM] {
            all_gone &= gone(claim_path(name)).await?;
        }
        for volume in &volumes {
            all_gone &= gone(format!("/api/v1/persistentvolumes/{volume}")).await?;
        }
        if all_gone {
            return Ok(deleted);
        }
        if Instant::now() > deadline {
            bail!("the dataset Job, the claims and their volumes did not go away within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the dataset Job has written the samples (it succeeded).
pub(super) async fn wait_for_dataset(client: &ApiClient) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = client
            .send(Method::GET, &dataset_job_path(), "application/json", None)
            .await?;
        if job.body["status"]["succeeded"].as_i64().unwrap_or(0) >= 1 {
            step(&format!(
                "dataset: Job {DATASET_JOB} wrote the samples to claim {DATASET_CLAIM}"
            ));
            return Ok(());
        }
        if job.body["status"]["failed"].as_i64().unwrap_or(0) >= 3 {
            bail!(
                "the dataset Job {NAMESPACE}/{DATASET_JOB} failed; see `kubectl logs job/{DATASET_JOB}`"
            );
        }
        if Instant::now() > deadline {
            bail!("the dataset Job {NAMESPACE}/{DATASET_JOB} did not finish within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Says which volume the job's checkpoints went to.
pub(super) async fn show_checkpoint_volume(client: &ApiClient) -> anyhow::Result<()> {
    let claim = client
        .send(
            Method::GET,
            &claim_path(CHECKPOINT_CLAIM),
            "application/json",
            None,
        )
        .await?;
    let volume = claim.body["spec"]["volumeName"]
        .as_str()
        .unwrap_or_default();
    if volume.is_empty() {
        step(&format!(
            "checkpoints: claim {CHECKPOINT_CLAIM} is not bound"
        ));
        return Ok(());
    }
    let pv = client
        .send(
            Method::GET,
            &format!("/api/v1/persistentvolumes/{volume}"),
            "application/json",
            None,
        )
        .await?;
    step(&format!(
        "checkpoints: claim {CHECKPOINT_CLAIM} bound to volume {volume} ({}, {}, on node {})",
        pv.body["spec"]["csi"]["driver"].as_str().unwrap_or("?"),
        pv.body["spec"]["capacity"]["storage"]
            .as_str()
            .unwrap_or("?"),
        claim.body["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
            .as_str()
            .unwrap_or("?"),
    ));
    Ok(())
}
