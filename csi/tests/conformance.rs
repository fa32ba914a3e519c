//! The conformance suite against `cox-csi` started as a real process on a
//! Unix socket, with real loop devices and mounts (root).

mod support;

use coxswain_csi::conformance::{self, Config};

#[tokio::test(flavor = "multi_thread")]
async fn cox_csi_passes_the_conformance_suite() -> anyhow::Result<()> {
    let fx = support::Fixture::start().await?;
    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    let report = conformance::run(Config::new(fx.endpoint.clone(), work)).await?;
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert_eq!(
        report.passed_count(),
        report.cases.len(),
        "nothing skipped: {report}"
    );
    assert!(
        support::mounts_under(fx.tmp.path()).is_empty(),
        "the suite left mounts"
    );
    assert!(
        support::leaked_loops(fx.tmp.path()).is_empty(),
        "the suite left loop devices"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cox_csi_passes_the_conformance_suite_with_directory_volumes() -> anyhow::Result<()> {
    let fx = support::Fixture::start().await?;
    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    let mut config = Config::new(fx.endpoint.clone(), work);
    config
        .parameters
        .insert("backing".into(), "directory".into());
    let report = conformance::run(config).await?;
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert!(
        support::mounts_under(fx.tmp.path()).is_empty(),
        "the suite left mounts"
    );
    Ok(())
}
