//! The CronJob controller over the in-process API, on a fake clock: runs start at scheduled
//! minutes, and `concurrencyPolicy: Forbid` holds a run back while one is active.

mod workloads_support;

use std::sync::Arc;
use std::time::Duration;

use coxswain_control_plane::workloads::{Clock, FakeClock, WorkloadsConfig};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use workloads_support::{event_reasons, fast_config, live_pods, obj, set_phase, start, wait_for};

fn cronjob(name: &str, policy: &str) -> CronJob {
    obj(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *", "timeZone": "UTC", "concurrencyPolicy": policy, "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]
            }}}}
        }
    }))
}

async fn jobs_of(jobs: &Api<Job>, cronjob: &str) -> Vec<Job> {
    jobs.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == cronjob)
        })
        .collect()
}

fn minute_name(cronjob: &str, t: Timestamp) -> String {
    format!("{cronjob}-{}", t.as_second() / 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_holds_a_run_back_until_the_active_one_finishes() {
    let clock = FakeClock::at(Timestamp::now());
    let config = WorkloadsConfig {
        clock: Arc::new(clock.clone()),
        ..fast_config()
    };
    let cluster = start(config).await;
    let client = &cluster.client;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let forbid = cronjobs
        .create(&PostParams::default(), &cronjob("forbid", "Forbid"))
        .await
        .unwrap();
    cronjobs
        .create(&PostParams::default(), &cronjob("allow", "Allow"))
        .await
        .unwrap();
    let created = forbid.metadata.creation_timestamp.unwrap().0;

    // 150 s after creation, two or three minutes have passed: the latest one runs, once.
    clock.set(created + Duration::from_secs(150));
    let first_minute = Timestamp::from_second((clock.now().as_second() / 60) * 60).unwrap();
    for name in ["forbid", "allow"] {
        cronjobs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({"spec": {"suspend": false}})),
            )
            .await
            .unwrap();
    }
    for name in ["forbid", "allow"] {
        let started = wait_for("the first run", || async {
            let js = jobs_of(&jobs, name).await;
            (!js.is_empty()).then_some(js)
        })
        .await;
        assert_eq!(
            started.len(),
            1,
            "{name}: one run for the latest missed minute"
        );
        assert_eq!(
            started[0].metadata.name.as_deref(),
            Some(minute_name(name, first_minute).as_str())
        );
        let status = wait_for("the first status", || async {
            let s = cronjobs.get(name).await.unwrap().status?;
            (s.last_schedule_time.as_ref().map(|t| t.0) == Some(first_minute)).then_some(s)
        })
        .await;
        assert_eq!(status.active.unwrap().len(), 1);
    }

    // A minute later, with the first runs still active: Allow starts a second, Forbid does not.
    clock.advance(Duration::from_secs(60));
    let second_minute = first_minute + Duration::from_secs(60);
    for name in ["forbid", "allow"] {
        let touch =
            serde_json::json!({"metadata": {"annotations": {"touched": clock.now().to_string()}}});
        cronjobs
            .patch(name, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
    }
    wait_for("allow's second run", || async {
        (jobs_of(&jobs, "allow").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        jobs_of(&jobs, "forbid").await.len(),
        1,
        "Forbid started a run while one was active"
    );

    // The first Forbid run finishes: the held-back run starts.
    let first = minute_name("forbid", first_minute);
    let pod = wait_for("the first run's pod", || async {
        live_pods(client, &format!("job-name={first}"))
            .await
            .into_iter()
            .next()
    })
    .await;
    set_phase(client, &pod, "Succeeded", 0).await;
    let second = minute_name("forbid", second_minute);
    wait_for("the held-back run", || async {
        jobs_of(&jobs, "forbid")
            .await
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(second.as_str()))
            .then_some(())
    })
    .await;
    let status = wait_for("the status", || async {
        let s = cronjobs.get("forbid").await.unwrap().status?;
        (s.last_schedule_time.as_ref().map(|t| t.0) == Some(second_minute)).then_some(s)
    })
    .await;
    assert!(status.last_successful_time.is_some());
    let active = status.active.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].name.as_deref(), Some(second.as_str()));
    let reasons = event_reasons(client, "CronJob", "forbid", "SawCompletedJob").await;
    for reason in ["SuccessfulCreate", "JobAlreadyActive"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
}
