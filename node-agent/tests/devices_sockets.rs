//! The registration socket's lifecycle with the REAL `cox-nvidia-plugin` binary:
//! the socket directory wiped under a running agent (the agent serves a new
//! `kubelet.sock`, the plugin notices and registers again, the checkpoint is
//! written back), an agent restart (stale sockets removed, `kubelet.sock`
//! recreated, the plugin back, running pods keep their GPUs), and a plugin restart
//! (the new registration taken and its `ListAndWatch` followed: an XID raised in
//! the new plugin reaches the agent). Needs root.

mod devices_support;

use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use devices_support::*;

/// The bound for re-registration after a wipe (both sides check every second).
const REREGISTER: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_socket_directory_is_served_again_and_the_plugin_re_registers() {
    require_root();
    let root = temp_root();
    let dir = root.path().join("device-plugins");
    let (manager, cancel) = start_manager(&dir).await;
    let _plugin = Plugin::spawn(&dir, "dgx-h100");
    let inventory = wait_inventory(&manager, "8 GPUs", |i| gpus(i) == 8).await;
    let gpu = uuids(&inventory)[3].clone();
    let (pod, c) = gpu_pod("held", 1, Some(std::slice::from_ref(&gpu)));
    prepare(&manager, &pod, &c).await.unwrap();
    let before = manager.registrations();
    assert_eq!(before, 1);

    std::fs::remove_dir_all(&dir).unwrap();

    let mut inventory = manager.watch_inventory();
    let waited = tokio::time::timeout(REREGISTER, async {
        loop {
            let served = dir.join("kubelet.sock").exists() && dir.join("nvidia-gpu.sock").exists();
            if served && manager.registrations() > before && gpus(&manager.inventory()) == 8 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), inventory.changed()).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no re-registration within {REREGISTER:?} of the wipe: registrations {}, kubelet.sock {}, \
         plugin socket {}, inventory {:?}",
        manager.registrations(),
        dir.join("kubelet.sock").exists(),
        dir.join("nvidia-gpu.sock").exists(),
        manager.inventory()
    );
    let kind = std::fs::symlink_metadata(dir.join("kubelet.sock"))
        .unwrap()
        .file_type();
    assert!(kind.is_socket());
    // The checkpoint came back with the wipe noticed, and the held GPU stays held.
    let checkpoint = std::fs::read_to_string(dir.join("checkpoint.json")).unwrap();
    assert!(checkpoint.contains(&gpu), "{checkpoint}");
    let (other, oc) = gpu_pod("other", 1, Some(std::slice::from_ref(&gpu)));
    let err = prepare(&manager, &other, &oc)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&gpu), "{err}");
    // The new session works: a free GPU is allocated through it.
    let (next, nc) = gpu_pod("next", 1, None);
    let spec = prepare(&manager, &next, &nc).await.unwrap();
    let visible = env(&spec, "NVIDIA_VISIBLE_DEVICES").unwrap();
    assert_ne!(visible, gpu);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_restart_clears_stale_sockets_and_a_plugin_restart_is_followed() {
    require_root();
    let root = temp_root();
    let dir = root.path().join("device-plugins");
    let (manager, cancel) = start_manager(&dir).await;
    let mut plugin = Plugin::spawn(&dir, "pcie-4x");
    let inventory = wait_inventory(&manager, "4 GPUs", |i| gpus(i) == 4).await;
    let ids = uuids(&inventory);
    let (pod, c) = gpu_pod("runs", 2, None);
    prepare(&manager, &pod, &c).await.unwrap();
    let held = manager.allocations()["runs"].clone();
    assert_eq!(held.len(), 2);

    // The agent stops (kubelet.sock goes with it) and a stale socket is left behind.
    cancel.cancel();
    let stale = dir.join("stale-plugin.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (manager, cancel) = start_manager(&dir).await;
    assert!(!stale.exists(), "the restarted agent left a stale socket");
    assert!(dir.join("kubelet.sock").exists());
    wait_inventory(&manager, "the plugin back with 4 GPUs", |i| gpus(i) == 4).await;
    assert!(plugin.running());
    assert_eq!(
        manager.allocations()["runs"],
        held,
        "the running pod lost its GPUs"
    );

    // The plugin restarts: the agent takes the new registration and follows its stream.
    plugin.kill();
    wait_inventory(&manager, "devices gone with the plugin", |i| gpus(i) == 0).await;
    let registrations = manager.registrations();
    let again = Plugin::spawn(&dir, "pcie-4x");
    wait_inventory(&manager, "the new plugin's 4 GPUs", |i| gpus(i) == 4).await;
    assert!(manager.registrations() > registrations);
    let free = ids.iter().find(|id| !held.contains(*id)).unwrap().clone();
    again.inject_xid(&free, 79).await;
    wait_inventory(&manager, "the XID through the new stream", |i| gpus(i) == 3).await;
    assert_eq!(manager.allocations()["runs"], held);
    cancel.cancel();
}
