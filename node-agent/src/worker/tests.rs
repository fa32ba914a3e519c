//! Unit tests of the pod worker over the fake runtime, fake namespaces, a cgroup v2
//! fixture, a fake mounter and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::images::{ImageConfig, LocalImageStore};
use crate::mounts::FakeMounter;
use crate::runtime::fake::FakeRuntime;
use crate::sandbox::cgroup::v2::CgroupV2;
use crate::sandbox::{FakeNamespaces, SandboxManager};

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    deps: WorkerDeps,
    runtime: Arc<FakeRuntime>,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    let (root, cg, rootfs) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let config = Arc::new(AgentConfig::new(root.path()));
    let mounter = Arc::new(FakeMounter::default());
    let images = LocalImageStore::new(config.images_dir(), mounter.clone());
    images
        .import_rootfs_dir("busybox", rootfs.path(), ImageConfig::default())
        .unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let clock = Arc::new(ManualClock::default());
    let sandbox = SandboxManager::new(
        root.path(),
        "cx",
        Box::new(FakeNamespaces::default()),
        Box::new(CgroupV2::new(cg.path())),
    );
    let deps = WorkerDeps {
        config,
        sandbox: Arc::new(sandbox),
        runtime: runtime.clone(),
        images: Arc::new(images),
        volumes: Arc::new(VolumeManager::new(vec![], mounter)),
        clock: clock.clone(),
        network: Arc::new(crate::network::NoNetwork),
        devices: Arc::new(crate::devices::NoDevices),
    };
    Fixture {
        _dirs: vec![root, cg, rootfs],
        deps,
        runtime,
        clock,
    }
}

fn pod(policy: &str, inits: &[&str], apps: &[&str], image: &str) -> Pod {
    let c = |n: &&str| serde_json::json!({"name": n, "image": image, "command": ["sh", "-c", format!("echo {n}")]});
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "uid1"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
            "containers": apps.iter().map(c).collect::<Vec<_>>(),
        },
    }))
    .unwrap()
}

fn steps(w: &mut PodWorker, n: usize) {
    for _ in 0..n {
        w.step();
    }
}

fn waiting_reason(w: &PodWorker, i: usize) -> Option<String> {
    let status = w.status();
    status.container_statuses.unwrap()[i]
        .state
        .clone()
        .unwrap()
        .waiting
        .and_then(|s| s.reason)
}

#[test]
fn pod_runs_to_succeeded() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Never", &[], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    assert_eq!(w.status().phase.as_deref(), Some("Running"));
    assert_eq!(
        f.runtime.args("uid1_main").unwrap(),
        ["sh", "-c", "echo main"]
    );
    f.runtime.exit("uid1_main", 0);
    steps(&mut w, 1);
    let status = w.status();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let term = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(w.step(), Action::Wait);
}

#[test]
fn failing_container_backs_off_exponentially() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Always", &[], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    f.runtime.exit("uid1_main", 3);
    steps(&mut w, 2);
    assert_eq!(waiting_reason(&w, 0).as_deref(), Some("CrashLoopBackOff"));
    let cs = w.status().container_statuses.unwrap()[0].clone();
    assert_eq!(cs.restart_count, 0);
    assert_eq!(cs.last_state.unwrap().terminated.unwrap().exit_code, 3);
    f.clock.advance(Duration::from_secs(9));
    steps(&mut w, 1);
    assert_eq!(waiting_reason(&w, 0).as_deref(), Some("CrashLoopBackOff"));
    f.clock.advance(Duration::from_secs(1));
    steps(&mut w, 1);
    assert_eq!(w.status().container_statuses.unwrap()[0].restart_count, 1);
    assert!(w.containers().next().unwrap().is_running());
    f.runtime.exit("uid1_main", 3);
    steps(&mut w, 1);
    let msg = w.status().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(msg.starts_with("back-off 20s"), "{msg}");
    assert_eq!(w.status().phase.as_deref(), Some("Running"));
}

#[test]
fn init_containers_run_first_in_order() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Never", &["i1", "i2"], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    assert!(f.runtime.state("uid1_i1").unwrap().is_some());
    assert!(f.runtime.state("uid1_i2").unwrap().is_none());
    assert_eq!(w.status().phase.as_deref(), Some("Pending"));
    f.runtime.exit("uid1_i1", 0);
    steps(&mut w, 2);
    assert!(f.runtime.state("uid1_i2").unwrap().is_some());
    assert!(f.runtime.state("uid1_main").unwrap().is_none());
    f.runtime.exit("uid1_i2", 0);
    steps(&mut w, 3);
    assert!(f.runtime.state("uid1_main").unwrap().is_some());
    assert_eq!(w.status().phase.as_deref(), Some("Running"));
}

#[test]
fn failed_init_container_fails_a_never_pod() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Never", &["i1"], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    f.runtime.exit("uid1_i1", 1);
    steps(&mut w, 2);
    assert_eq!(w.status().phase.as_deref(), Some("Failed"));
    assert!(f.runtime.state("uid1_main").unwrap().is_none());
}

#[test]
fn missing_image_is_err_image_pull() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Always", &[], &["main"], "nope:1"),
        PodData::default(),
    );
    steps(&mut w, 3);
    assert_eq!(waiting_reason(&w, 0).as_deref(), Some("ErrImagePull"));
    assert_eq!(w.status().phase.as_deref(), Some("Pending"));
    steps(&mut w, 1);
    assert_eq!(waiting_reason(&w, 0).as_deref(), Some("ImagePullBackOff"));
    f.clock.advance(Duration::from_secs(10));
    steps(&mut w, 1);
    assert_eq!(waiting_reason(&w, 0).as_deref(), Some("ErrImagePull"));
}

#[test]
fn a_new_worker_adopts_running_containers() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Always", &["i1"], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    f.runtime.exit("uid1_i1", 0);
    steps(&mut w, 4);
    let pid = f.runtime.state("uid1_main").unwrap().unwrap().pid;
    drop(w); // the agent "dies" without cleaning up
    let mut w2 = PodWorker::new(
        f.deps.clone(),
        pod("Always", &["i1"], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w2, 4);
    let main = w2.containers().nth(1).unwrap();
    assert_eq!(
        main.current,
        Current::Running {
            pid,
            started: match &main.current {
                Current::Running { started, .. } => *started,
                _ => unreachable!(),
            }
        }
    );
    assert_eq!(
        f.runtime.state("uid1_main").unwrap().unwrap().pid,
        pid,
        "not restarted"
    );
    assert!(
        f.runtime.state("uid1_i1").unwrap().is_none(),
        "init container not rerun"
    );
}

#[test]
fn terminate_stops_and_removes_everything() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Always", &[], &["a", "b"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    w.terminate_with_pod_grace();
    steps(&mut w, 3);
    assert!(w.is_removed());
    assert!(f.runtime.list().unwrap().is_empty());
    assert!(f.deps.sandbox.list().unwrap().is_empty());
    assert!(!f.deps.config.pod_dir("uid1").exists());
}

#[test]
fn orphans_are_found_by_listing() {
    let f = fixture();
    let mut w = PodWorker::new(
        f.deps.clone(),
        pod("Always", &[], &["main"], "busybox"),
        PodData::default(),
    );
    steps(&mut w, 3);
    drop(w);
    let removed = remove_orphans(&f.deps, &Default::default()).unwrap();
    assert_eq!(removed.into_iter().collect::<Vec<_>>(), ["uid1"]);
    assert!(f.runtime.list().unwrap().is_empty());
    assert!(f.deps.sandbox.list().unwrap().is_empty());
}

#[test]
fn a_gpu_container_on_an_agent_without_devices_waits_with_the_reason() {
    let f = fixture();
    let mut p = pod("Never", &[], &["train"], "busybox");
    p.spec.as_mut().unwrap().containers[0].resources = Some(
        serde_json::from_value(serde_json::json!({"limits": {"nvidia.com/gpu": "1"}})).unwrap(),
    );
    let mut w = PodWorker::new(f.deps.clone(), p, PodData::default());
    steps(&mut w, 3);
    assert_eq!(
        waiting_reason(&w, 0).as_deref(),
        Some("UnexpectedAdmissionError")
    );
    assert!(
        f.runtime.args("uid1_train").is_none(),
        "nothing was created"
    );
}

/// Hands out whatever token it holds now; remembers the pods it was told to forget.
#[derive(Default)]
struct FakeTokens {
    current: std::sync::Mutex<String>,
    forgotten: std::sync::Mutex<Vec<String>>,
}

impl crate::volumes::tokens::TokenSource for FakeTokens {
    fn token(
        &self,
        pod: &Pod,
        request: &crate::volumes::tokens::TokenRequest,
    ) -> Result<String, String> {
        assert_eq!(pod.metadata.uid.as_deref(), Some("uid1"));
        assert_eq!(
            (request.audience.as_str(), request.expiration_seconds),
            ("vault", 600)
        );
        Ok(self.current.lock().unwrap().clone())
    }

    fn forget(&self, uid: &str) {
        self.forgotten.lock().unwrap().push(uid.to_string());
    }
}

#[test]
fn a_running_pods_projected_token_is_replaced_in_place_and_forgotten_on_removal() {
    let f = fixture();
    let tokens = Arc::new(FakeTokens::default());
    *tokens.current.lock().unwrap() = "t1".into();
    f.deps.volumes.set_token_source(tokens.clone());
    let mut spec = pod("Always", &[], &["main"], "busybox");
    spec.spec.as_mut().unwrap().volumes = Some(vec![
        serde_json::from_value(serde_json::json!({"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 600}},
        ]}}))
        .unwrap(),
    ]);
    let mut w = PodWorker::new(f.deps.clone(), spec, PodData::default());
    steps(&mut w, 3);
    assert_eq!(w.status().phase.as_deref(), Some("Running"));
    let file = f.deps.config.pod_dir("uid1").join("volumes/api/token");
    let read = || std::fs::read_to_string(&file).unwrap();
    assert_eq!(read(), "t1");
    // The source has a new token: written only once the next check is due.
    *tokens.current.lock().unwrap() = "t2".into();
    steps(&mut w, 2);
    assert_eq!(read(), "t1");
    f.clock.advance(TOKEN_CHECK);
    steps(&mut w, 1);
    assert_eq!(read(), "t2");
    assert!(
        !file.with_file_name(".token.tmp").exists(),
        "the staged file was renamed into place"
    );
    w.terminate_with_pod_grace();
    steps(&mut w, 3);
    assert!(w.is_removed());
    assert_eq!(*tokens.forgotten.lock().unwrap(), ["uid1"]);
}

#[test]
fn a_projected_token_without_a_token_source_is_a_volume_error_naming_it() {
    let f = fixture();
    let mut spec = pod("Always", &[], &["main"], "busybox");
    spec.spec.as_mut().unwrap().volumes = Some(vec![
        serde_json::from_value(serde_json::json!({"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}},
        ]}}))
        .unwrap(),
    ]);
    let mut w = PodWorker::new(f.deps.clone(), spec, PodData::default());
    steps(&mut w, 2);
    let status = w.status();
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("\"api\"") && message.contains("serviceAccountToken"),
        "{message}"
    );
}
