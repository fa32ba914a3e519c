//! The suite against the driver with a fake mounter, over a real Unix
//! socket: every rule the suite checks holds without root.

use std::sync::Arc;

use super::{Config, Outcome, run};
use crate::mounter::FakeMounter;
use crate::{Driver, DriverConfig, server};

#[tokio::test]
async fn the_driver_passes_the_suite_with_a_fake_mounter() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = DriverConfig::new("node-a", tmp.path().join("state"));
    config.capacity_bytes = Some(1 << 30);
    let driver = Driver::open(config, Arc::new(FakeMounter::default())).unwrap();
    let socket = tmp.path().join("csi.sock");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let socket = socket.clone();
        async move { server::serve(driver, &socket, async { drop(stopped.await) }).await }
    });
    let endpoint = format!("unix://{}", socket.display());
    crate::CsiClient::wait_ready(&endpoint, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut suite = Config::new(endpoint, work);
    suite.check_data = false;
    let report = run(suite).await.unwrap();
    println!("{report}");
    assert!(report.passed(), "{report}");
    let skipped: Vec<_> = report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
        .collect();
    assert_eq!(skipped.len(), 1, "only the data check is skipped: {report}");
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(!socket.exists());
}
