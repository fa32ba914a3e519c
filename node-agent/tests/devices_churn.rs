//! 500 GPU pods of random churn through the agent's device manager against the
//! REAL `cox-nvidia-plugin` (8 simulated GPUs): pods asking for 1-3 GPUs, some
//! with the scheduler's choice in the annotation (sometimes a GPU another pod
//! holds, which must be refused), others left to the node; pods freed at random;
//! the plugin killed and restarted and the manager restarted over the same
//! checkpoint in between. After every step: no GPU is held by two live pods, the
//! manager's allocations are exactly what each pod was given, and each container's
//! `NVIDIA_VISIBLE_DEVICES` names exactly its GPUs; after a restart the running
//! pods keep the same GPUs. Needs root.

mod devices_support;

use std::collections::{BTreeMap, BTreeSet};

use devices_support::*;

const PODS: u32 = 500;
const GPUS: usize = 8;

/// xorshift64*: the same churn on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Checks the manager's allocations against the pods' own record of their GPUs.
fn check(
    manager_view: &BTreeMap<String, BTreeSet<String>>,
    live: &BTreeMap<String, BTreeSet<String>>,
) {
    let mut owner: BTreeMap<&String, &String> = BTreeMap::new();
    for (uid, ids) in manager_view {
        for id in ids {
            if let Some(other) = owner.insert(id, uid) {
                panic!("GPU {id} is held by both {other} and {uid}");
            }
        }
    }
    assert_eq!(
        manager_view, live,
        "the manager's allocations differ from the pods' GPUs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_churn_with_restarts_never_gives_one_gpu_to_two_live_pods() {
    require_root();
    let root = temp_root();
    let dir = root.path().join("device-plugins");
    let (mut manager, mut cancel) = start_manager(&dir).await;
    let mut plugin = Plugin::spawn(&dir, "dgx-h100");
    let inventory = wait_inventory(&manager, "8 GPUs", |i| gpus(i) == 8).await;
    let all: Vec<String> = uuids(&inventory);
    assert_eq!(all.len(), GPUS);

    let mut rng = Rng(0x5eed_c0c5_7a1e_0001);
    let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut refused_held, mut refused_full, mut restarts) = (0, 0, 0);
    for n in 0..PODS {
        // Free fewer pods than start, so the node runs full and refuses some.
        let held: usize = live.values().map(BTreeSet::len).sum();
        let frees = rng.below(2) + usize::from(held == GPUS);
        for _ in 0..frees.min(live.len()) {
            let uid = live.keys().nth(rng.below(live.len())).unwrap().clone();
            live.remove(&uid);
            coxswain_node_agent::devices::DeviceStage::release_pod(&manager, &uid);
        }

        let uid = format!("churn-{n}");
        let want = 1 + rng.below(3);
        let annotated = rng.below(3) == 0;
        let chosen: Option<Vec<String>> = annotated.then(|| {
            let mut ids = BTreeSet::new();
            while ids.len() < want {
                ids.insert(all[rng.below(GPUS)].clone());
            }
            ids.into_iter().collect()
        });
        let (pod, c) = gpu_pod(&uid, want as u32, chosen.as_deref());
        let taken: BTreeSet<String> = live.values().flatten().cloned().collect();
        match prepare(&manager, &pod, &c).await {
            Ok(spec) => {
                let got: BTreeSet<String> =
                    manager.allocations().get(&uid).cloned().unwrap_or_default();
                assert_eq!(got.len(), want, "pod {uid} got {got:?}");
                assert!(got.is_disjoint(&taken), "pod {uid} got a held GPU: {got:?}");
                if let Some(chosen) = &chosen {
                    assert_eq!(
                        got,
                        chosen.iter().cloned().collect(),
                        "pod {uid} did not get the scheduler's GPUs"
                    );
                }
                let visible: BTreeSet<String> = env(&spec, "NVIDIA_VISIBLE_DEVICES")
                    .unwrap()
                    .split(',')
                    .map(str::to_string)
                    .collect();
                assert_eq!(visible, got, "pod {uid}'s container sees other GPUs");
                live.insert(uid, got);
            }
            Err(e) => {
                let e = e.to_string();
                match &chosen {
                    Some(ids) => {
                        assert!(
                            ids.iter().any(|id| taken.contains(id)),
                            "pod {uid} refused with free GPUs {ids:?}: {e}"
                        );
                        refused_held += 1;
                    }
                    None => {
                        assert!(
                            GPUS - taken.len() < want,
                            "pod {uid} refused with {} free: {e}",
                            GPUS - taken.len()
                        );
                        refused_full += 1;
                    }
                }
            }
        }
        check(&manager.allocations(), &live);

        if n % 50 == 49 {
            restarts += 1;
            if restarts % 2 == 1 {
                // The plugin dies and comes back.
                plugin.kill();
                wait_inventory(&manager, "the plugin gone", |i| gpus(i) == 0).await;
                plugin = Plugin::spawn(&dir, "dgx-h100");
            } else {
                // The agent restarts: a new manager over the same checkpoint.
                cancel.cancel();
                (manager, cancel) = start_manager(&dir).await;
            }
            wait_inventory(&manager, "8 GPUs after the restart", |i| gpus(i) == 8).await;
            check(&manager.allocations(), &live);
        }
    }
    println!(
        "{PODS} pods: {} live at the end, {refused_held} refused for a held GPU, \
         {refused_full} refused for want of free GPUs, {restarts} restarts",
        live.len()
    );
    assert!(
        refused_held > 0 && refused_full > 0,
        "the churn never hit a conflict"
    );
    cancel.cancel();
}
