//! Failures turned into typed errors: plugin error objects, crashes,
//! unreadable results, missing binaries, invalid attachments.

use super::*;
use crate::fake::{Reply, ScriptedExec};
use crate::{Command, Error};

#[test]
fn plugin_errors_become_typed_errors_with_plugin_and_message() {
    let s = setup(three_plugins());
    s.fake.reply(
        "tuning",
        Command::Add,
        Reply::Error {
            code: 7,
            msg: "invalid sysctl".into(),
        },
    );
    let err = s.cni.add(&net("1.0.0"), &pod()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("plugin tuning")
            && text.contains("invalid sysctl")
            && text.contains("code 7"),
        "{text}"
    );
    assert_eq!(err.plugin_error().unwrap().network, "pods");
    // The chain stopped and nothing was cached.
    assert!(
        !s.fake
            .sequence()
            .contains(&("portmap".to_string(), Command::Add))
    );
    assert!(
        s.cni
            .cached_result("pods", "pod1", "eth0")
            .unwrap()
            .is_none()
    );

    s.fake.reply(
        "tuning",
        Command::Add,
        Reply::Crash("panic: runtime error".into()),
    );
    let text = s.cni.add(&net("1.0.0"), &pod()).unwrap_err().to_string();
    assert!(
        text.contains("tuning")
            && text.contains("exit status 2")
            && text.contains("panic: runtime error"),
        "{text}"
    );

    s.fake
        .reply("tuning", Command::Add, Reply::Raw("not json".into()));
    let err = s.cni.add(&net("1.0.0"), &pod()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResult { plugin, .. } if plugin == "tuning"),
        "{err}"
    );
    s.fake
        .reply("tuning", Command::Add, Reply::Raw(String::new()));
    assert!(
        s.cni
            .add(&net("1.0.0"), &pod())
            .unwrap_err()
            .to_string()
            .contains("empty output")
    );
}

#[test]
fn missing_plugin_names_it_and_the_search_path_before_running_anything() {
    let s = setup(
        ScriptedExec::new()
            .with_plugin("bridge")
            .with_plugin("tuning"),
    );
    let err = s.cni.add(&net("1.0.0"), &pod()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, Error::PluginNotFound { plugin, .. } if plugin == "portmap"),
        "{text}"
    );
    assert!(
        text.contains(&format!("/nonexistent:{FAKE_PLUGIN_DIR}")),
        "{text}"
    );
    assert!(
        s.fake.sequence().is_empty(),
        "no plugin ran: {:?}",
        s.fake.sequence()
    );
}

#[test]
fn invalid_attachments_are_rejected_before_any_plugin_runs() {
    let s = setup(three_plugins());
    let bad = Attachment::new("pod1", "/var/run/netns/pod1", "eth0:1");
    assert!(matches!(
        s.cni.add(&net("1.0.0"), &bad),
        Err(Error::InvalidAttachment {
            field: "ifname",
            ..
        })
    ));
    assert!(s.fake.calls().is_empty());
}
