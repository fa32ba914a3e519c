//! VERSION negotiation across a chain, and STATUS/GC only for 1.1.0 plugins.

use serde_json::json;

use super::*;
use crate::fake::{Reply, ScriptedExec};
use crate::{Command, Error};

#[test]
fn version_negotiation_picks_the_highest_common_version() {
    let fake = ScriptedExec::new()
        .with_versioned_plugin("bridge", &["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        .with_versioned_plugin("tuning", &["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
        .with_versioned_plugin("portmap", &["0.3.1", "0.4.0"]);
    let s = setup(fake);
    // The config asks for 1.1.0; portmap stops at 0.4.0.
    let out = s.cni.add(&net("1.1.0"), &pod()).unwrap();
    assert_eq!(out.version.to_string(), "0.4.0");
    assert_eq!(
        stdin_of(&s.fake, "bridge", Command::Add)["cniVersion"],
        "0.4.0"
    );
    // VERSION is asked once per plugin, then remembered.
    s.cni.del(&net("1.1.0"), &pod()).unwrap();
    s.cni.add(&net("1.1.0"), &pod()).unwrap();
    let versions = s
        .fake
        .calls()
        .iter()
        .filter(|c| c.command == Command::Version)
        .count();
    assert_eq!(versions, 3);
}

#[test]
fn no_common_version_is_a_typed_error() {
    let s = setup(
        ScriptedExec::new()
            .with_plugin("bridge")
            .with_plugin("tuning")
            .with_versioned_plugin("portmap", &["0.1.0", "0.2.0"]),
    );
    let err = s.cni.add(&net("1.0.0"), &pod()).unwrap_err();
    assert!(
        matches!(&err, Error::NoCommonVersion { plugin, .. } if plugin == "portmap"),
        "{err}"
    );
    assert!(err.to_string().contains("0.1.0, 0.2.0"), "{err}");
}

#[test]
fn status_and_gc_go_only_to_1_1_0_plugins() {
    let fake = ScriptedExec::new()
        .with_versioned_plugin("bridge", &["0.4.0", "1.0.0"])
        .with_versioned_plugin("tuning", &["1.0.0", "1.1.0"])
        .with_versioned_plugin("portmap", &["1.0.0"]);
    let s = setup(fake);
    let reports = s.cni.status(&net("1.1.0")).unwrap();
    let outcomes: Vec<_> = reports
        .iter()
        .map(|r| (r.plugin.as_str(), r.outcome.clone()))
        .collect();
    use crate::PluginOutcome::{Done, NotSupported};
    assert_eq!(
        outcomes,
        [
            ("bridge", NotSupported),
            ("tuning", Done),
            ("portmap", NotSupported)
        ]
    );
    assert_eq!(s.fake.sequence(), [("tuning".to_string(), Command::Status)]);
    assert_eq!(
        stdin_of(&s.fake, "tuning", Command::Status)["cniVersion"],
        "1.1.0"
    );
    let valid = [crate::ValidAttachment {
        container_id: "pod1".into(),
        ifname: "eth0".into(),
    }];
    s.cni.gc(&net("1.1.0"), &valid).unwrap();
    let gc = stdin_of(&s.fake, "tuning", Command::Gc);
    assert_eq!(
        gc["cni.dev/valid-attachments"],
        json!([{"containerID": "pod1", "ifname": "eth0"}])
    );
    s.fake.reply(
        "tuning",
        Command::Status,
        Reply::Error {
            code: 50,
            msg: "plugin not available".into(),
        },
    );
    assert_eq!(
        s.cni
            .status(&net("1.1.0"))
            .unwrap_err()
            .plugin_error()
            .unwrap()
            .code,
        50
    );
}
