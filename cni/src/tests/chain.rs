//! ADD order and `prevResult` threading, DEL in reverse from the cache,
//! DEL idempotence, CHECK, and the async wrapper.

use serde_json::json;

use super::*;
use crate::fake::Reply;
use crate::{Command, Error};

#[test]
fn add_runs_the_chain_in_order_threading_prev_result() {
    let s = setup(three_plugins());
    let out = s.cni.add(&net("1.0.0"), &pod()).unwrap();
    let order = [
        ("bridge", Command::Add),
        ("tuning", Command::Add),
        ("portmap", Command::Add),
    ];
    assert_eq!(s.fake.sequence(), order.map(|(p, c)| (p.to_string(), c)));
    assert!(
        stdin_of(&s.fake, "bridge", Command::Add)
            .get("prevResult")
            .is_none()
    );
    let tuning = stdin_of(&s.fake, "tuning", Command::Add);
    assert_eq!(
        tuning["prevResult"]["interfaces"],
        json!([{"name": "bridge"}])
    );
    assert_eq!(tuning["name"], "pods");
    assert_eq!(tuning["cniVersion"], "1.0.0");
    assert!(
        tuning.get("runtimeConfig").is_none(),
        "tuning did not declare portMappings"
    );
    let portmap = stdin_of(&s.fake, "portmap", Command::Add);
    assert_eq!(
        portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    let names: Vec<&str> = out
        .result
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["bridge", "tuning", "portmap"]);
    let env = &s
        .fake
        .calls()
        .into_iter()
        .find(|c| c.command == Command::Add)
        .unwrap()
        .env;
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("CNI_CONTAINERID"), "pod1");
    assert_eq!(get("CNI_NETNS"), "/var/run/netns/pod1");
    assert_eq!(get("CNI_IFNAME"), "eth0");
    assert_eq!(get("CNI_ARGS"), "K8S_POD_NAME=w-0");
    assert_eq!(get("CNI_PATH"), format!("/nonexistent:{FAKE_PLUGIN_DIR}"));
    let cached = s
        .cni
        .cached_result("pods", "pod1", "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(cached.result, out.raw);
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_and_clears_the_cache() {
    let s = setup(three_plugins());
    let added = s.cni.add(&net("1.0.0"), &pod()).unwrap();
    s.fake.clear_calls();
    // DEL after a restart: the caller no longer knows the port mappings.
    let mut bare = pod();
    bare.runtime_config = Default::default();
    s.cni.del(&net("1.0.0"), &bare).unwrap();
    let order = [
        ("portmap", Command::Del),
        ("tuning", Command::Del),
        ("bridge", Command::Del),
    ];
    assert_eq!(s.fake.sequence(), order.map(|(p, c)| (p.to_string(), c)));
    for plugin in ["portmap", "tuning", "bridge"] {
        assert_eq!(
            stdin_of(&s.fake, plugin, Command::Del)["prevResult"],
            added.raw,
            "{plugin}"
        );
    }
    assert_eq!(
        stdin_of(&s.fake, "portmap", Command::Del)["runtimeConfig"]["portMappings"][0]["containerPort"],
        80
    );
    assert_eq!(s.cni.cached_result("pods", "pod1", "eth0").unwrap(), None);
}

#[test]
fn del_is_idempotent_without_cache_and_with_not_found_answers() {
    let s = setup(three_plugins());
    s.cni.del(&net("1.0.0"), &pod()).unwrap();
    assert!(
        stdin_of(&s.fake, "bridge", Command::Del)
            .get("prevResult")
            .is_none()
    );
    s.fake.reply(
        "tuning",
        Command::Del,
        Reply::Error {
            code: 3,
            msg: "container unknown".into(),
        },
    );
    s.fake.reply(
        "bridge",
        Command::Del,
        Reply::Error {
            code: 999,
            msg: "link cox0 not found".into(),
        },
    );
    s.cni.del(&net("1.0.0"), &pod()).unwrap();
    s.cni.del(&net("1.0.0"), &pod()).unwrap();
}

#[test]
fn failed_del_keeps_the_cache_for_a_retry() {
    let s = setup(three_plugins());
    s.cni.add(&net("1.0.0"), &pod()).unwrap();
    s.fake.reply(
        "tuning",
        Command::Del,
        Reply::Error {
            code: 5,
            msg: "device busy".into(),
        },
    );
    let err = s.cni.del(&net("1.0.0"), &pod()).unwrap_err();
    let plugin_err = err.plugin_error().expect("typed plugin error");
    assert_eq!((plugin_err.plugin.as_str(), plugin_err.code), ("tuning", 5));
    assert!(
        s.cni
            .cached_result("pods", "pod1", "eth0")
            .unwrap()
            .is_some()
    );
    s.fake.reply("tuning", Command::Del, Reply::Default);
    s.cni.del(&net("1.0.0"), &pod()).unwrap();
    assert!(
        s.cni
            .cached_result("pods", "pod1", "eth0")
            .unwrap()
            .is_none()
    );
}

#[test]
fn check_uses_the_cache_and_respects_disable_check_and_version() {
    let s = setup(three_plugins());
    let err = s.cni.check(&net("1.0.0"), &pod()).unwrap_err();
    assert!(matches!(err, Error::NotAttached { .. }), "{err}");
    let added = s.cni.add(&net("1.0.0"), &pod()).unwrap();
    s.fake.clear_calls();
    s.cni.check(&net("1.0.0"), &pod()).unwrap();
    let order = [
        ("bridge", Command::Check),
        ("tuning", Command::Check),
        ("portmap", Command::Check),
    ];
    assert_eq!(s.fake.sequence(), order.map(|(p, c)| (p.to_string(), c)));
    assert_eq!(
        stdin_of(&s.fake, "tuning", Command::Check)["prevResult"],
        added.raw
    );
    s.fake.reply(
        "bridge",
        Command::Check,
        Reply::Error {
            code: 103,
            msg: "eth0 has the wrong address".into(),
        },
    );
    assert!(
        s.cni
            .check(&net("1.0.0"), &pod())
            .unwrap_err()
            .to_string()
            .contains("wrong address")
    );
    let mut disabled = net("1.0.0");
    disabled.disable_check = true;
    s.cni.check(&disabled, &pod()).unwrap();

    let old = setup(three_plugins());
    old.cni.add(&net("0.3.1"), &pod()).unwrap();
    assert!(matches!(
        old.cni.check(&net("0.3.1"), &pod()),
        Err(Error::Unsupported { .. })
    ));
}

#[tokio::test]
async fn async_wrapper_runs_on_the_blocking_pool() {
    let s = setup(three_plugins());
    let cni = crate::AsyncCni::new(s.cni);
    let out = cni.add(net("1.0.0"), pod()).await.unwrap();
    assert_eq!(out.result.interfaces.len(), 3);
    cni.check(net("1.0.0"), pod()).await.unwrap();
    cni.del(net("1.0.0"), pod()).await.unwrap();
    assert!(
        cni.blocking()
            .cached_result("pods", "pod1", "eth0")
            .unwrap()
            .is_none()
    );
}
