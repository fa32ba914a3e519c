//! The driver killed with SIGKILL mid-lifecycle (root): a restarted driver
//! knows its stages and finishes the cleanup, leaving no mount and no loop
//! device; after a simulated reboot it stages again with the data intact.

mod support;

use anyhow::Result;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn driver_killed_between_unpublish_and_unstage_finishes_cleanup() -> Result<()> {
    let mut fx = Fixture::start().await?;
    let id = create(&fx.client, "killed", 16 << 20).await?;
    let (staging, pod) = (fx.path("staging"), fx.path("pod"));
    stage(&fx.client, &id, &staging).await?;
    publish(&fx.client, &id, &staging, &pod, false).await?;
    std::fs::write(format!("{pod}/data"), b"before the kill")?;
    unpublish(&fx.client, &id, &pod).await?;
    fx.kill()?;
    assert_eq!(
        leaked_loops(fx.tmp.path()).len(),
        1,
        "the stage holds one loop device"
    );
    fx.restart().await?;
    unstage(&fx.client, &id, &staging).await?;
    assert_eq!(
        mounts_under(fx.tmp.path()),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(leaked_loops(fx.tmp.path()), Vec::<String>::new());
    delete(&fx.client, &id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_simulated_reboot_the_volume_stages_again_with_its_data() -> Result<()> {
    let mut fx = Fixture::start().await?;
    let id = create(&fx.client, "rebooted", 16 << 20).await?;
    let (staging, pod) = (fx.path("staging"), fx.path("pod"));
    stage(&fx.client, &id, &staging).await?;
    publish(&fx.client, &id, &staging, &pod, false).await?;
    std::fs::write(format!("{pod}/data"), b"before the reboot")?;
    fx.kill()?;
    // A reboot: every mount and loop device is gone, the state directory stays.
    drop(Guard(fx.tmp.path().to_path_buf()));
    assert!(mounts_under(fx.tmp.path()).is_empty());
    fx.restart().await?;
    stage(&fx.client, &id, &staging).await?;
    publish(&fx.client, &id, &staging, &pod, false).await?;
    assert_eq!(std::fs::read(format!("{pod}/data"))?, b"before the reboot");
    unpublish(&fx.client, &id, &pod).await?;
    unstage(&fx.client, &id, &staging).await?;
    assert!(mounts_under(fx.tmp.path()).is_empty());
    assert!(leaked_loops(fx.tmp.path()).is_empty());
    delete(&fx.client, &id).await?;
    Ok(())
}
