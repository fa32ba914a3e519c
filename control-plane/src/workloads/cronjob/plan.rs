//! What a CronJob should do at a given time: which scheduled run is due, whether the
//! concurrency policy lets it start, and when to look again. Pure, so unit tests drive it
//! with a [`FakeClock`](crate::workloads::FakeClock).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};

use super::schedule::Schedule;
use crate::workloads::job::status::is_finished;

/// More missed runs than this get a warning (Kubernetes' rule); the latest still runs.
pub const MAX_MISSED_WARNING: usize = 100;

/// The decision for one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The run to start now: the Job's name and its scheduled time.
    pub start: Option<(String, Timestamp)>,
    /// Whether the active Jobs must be deleted first (`Replace`).
    pub replace_active: bool,
    /// A due run was skipped because one is still active (`Forbid`).
    pub forbidden: bool,
    /// Scheduled times passed since the last run (more than [`MAX_MISSED_WARNING`] is warned).
    pub missed: usize,
    /// The latest run not started because `startingDeadlineSeconds` passed (Kubernetes'
    /// `MissSchedule`), when no run within the deadline is due.
    pub too_late: Option<Timestamp>,
    /// The next scheduled time after now.
    pub next: Option<Timestamp>,
}

/// The Job name for a run scheduled at `at`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, at: Timestamp) -> String {
    format!("{cronjob}-{}", at.as_second().div_euclid(60))
}

/// The schedule and time zone of `cj`; the error names the field.
pub fn schedule_of(cj: &CronJob) -> Result<(Schedule, TimeZone), (String, String)> {
    let schedule =
        Schedule::parse(&cj.spec.schedule).map_err(|e| ("spec.schedule".to_string(), e))?;
    let tz = match cj.spec.time_zone.as_deref() {
        None | Some("") => TimeZone::system(),
        Some(name) => TimeZone::get(name).map_err(|e| {
            (
                "spec.timeZone".to_string(),
                format!("unknown time zone {name:?}: {e}"),
            )
        })?,
    };
    Ok((schedule, tz))
}

/// Decides what `cj`, owning `jobs`, does at `now`.
pub fn decide(
    cj: &CronJob,
    schedule: &Schedule,
    tz: &TimeZone,
    jobs: &[Job],
    now: Timestamp,
) -> Decision {
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map_or(created, |t| t.0);
    let unlimited = earliest;
    let mut cutoff = None;
    if let Some(deadline) = cj.spec.starting_deadline_seconds {
        // Runs whose start would be later than their deadline are not considered at all.
        let at = now
            .checked_sub(SignedDuration::from_secs(deadline))
            .unwrap_or(Timestamp::MIN);
        earliest = earliest.max(at);
        cutoff = Some(at);
    }
    let mut latest = None;
    let mut missed = 0usize;
    let mut t = earliest;
    while let Some(next) = schedule.next_after(t, tz) {
        if next > now || missed >= 1_000_000 {
            break;
        }
        latest = Some(next);
        missed += 1;
        t = next;
    }
    let next = schedule.next_after(now, tz);
    let mut decision = Decision {
        start: None,
        replace_active: false,
        forbidden: false,
        missed,
        too_late: None,
        next,
    };
    let Some(at) = latest else {
        if let Some(cutoff) = cutoff {
            decision.too_late = latest_before(schedule, tz, unlimited, cutoff);
        }
        return decision;
    };
    let job = job_name(name, at);
    if jobs
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(job.as_str()))
    {
        return decision;
    }
    let active = jobs.iter().any(|j| !is_finished(j));
    match cj.spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if active => decision.forbidden = true,
        "Replace" => {
            decision.replace_active = active;
            decision.start = Some((job, at));
        }
        _ => decision.start = Some((job, at)),
    }
    decision
}

/// The latest scheduled time in `(after, until]`, looking at no more than 100,000.
fn latest_before(
    schedule: &Schedule,
    tz: &TimeZone,
    after: Timestamp,
    until: Timestamp,
) -> Option<Timestamp> {
    let mut latest = None;
    let mut t = after;
    for _ in 0..100_000 {
        match schedule.next_after(t, tz) {
            Some(next) if next <= until => {
                latest = Some(next);
                t = next;
            }
            _ => break,
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{Clock, FakeClock};
    use std::time::Duration;

    fn cronjob(schedule: &str, policy: &str, created: &str) -> CronJob {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nightly", "creationTimestamp": created},
            "spec": {"schedule": schedule, "concurrencyPolicy": policy, "timeZone": "UTC",
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}
        }))
        .unwrap()
    }

    fn job(name: &str, finished: bool) -> Job {
        let conditions = if finished {
            serde_json::json!([{"type": "Complete", "status": "True"}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn fires_once_per_scheduled_minute_with_a_fake_clock() {
        let clock = FakeClock::at(ts("2026-01-01T00:00:30Z"));
        let mut cj = cronjob("*/5 * * * *", "Allow", "2026-01-01T00:00:00Z");
        let (schedule, tz) = schedule_of(&cj).unwrap();
        let d = decide(&cj, &schedule, &tz, &[], clock.now());
        assert_eq!(d.start, None);
        assert_eq!(d.next, Some(ts("2026-01-01T00:05:00Z")));

        clock.advance(Duration::from_secs(5 * 60));
        let d = decide(&cj, &schedule, &tz, &[], clock.now());
        let at = ts("2026-01-01T00:05:00Z");
        assert_eq!(
            d.start,
            Some((format!("nightly-{}", at.as_second() / 60), at))
        );
        // Once the run is recorded, nothing more is due until the next time.
        cj.status = Some(k8s_openapi::api::batch::v1::CronJobStatus {
            last_schedule_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at)),
            ..Default::default()
        });
        let started = job(&job_name("nightly", at), false);
        let d = decide(
            &cj,
            &schedule,
            &tz,
            std::slice::from_ref(&started),
            clock.now(),
        );
        assert_eq!(d.start, None);
        assert_eq!(d.next, Some(ts("2026-01-01T00:10:00Z")));
    }

    #[test]
    fn concurrency_policies() {
        let clock = FakeClock::at(ts("2026-01-01T00:01:10Z"));
        let running = job("nightly-0", false);
        for (policy, start, replace, forbidden) in [
            ("Allow", true, false, false),
            ("Forbid", false, false, true),
            ("Replace", true, true, false),
        ] {
            let cj = cronjob("* * * * *", policy, "2026-01-01T00:00:30Z");
            let (schedule, tz) = schedule_of(&cj).unwrap();
            let d = decide(
                &cj,
                &schedule,
                &tz,
                std::slice::from_ref(&running),
                clock.now(),
            );
            assert_eq!(d.start.is_some(), start, "{policy}");
            assert_eq!(
                (d.replace_active, d.forbidden),
                (replace, forbidden),
                "{policy}"
            );
        }
        // Forbid starts the (late) run once the active one has finished.
        let cj = cronjob("* * * * *", "Forbid", "2026-01-01T00:00:30Z");
        let (schedule, tz) = schedule_of(&cj).unwrap();
        let done = job("nightly-0", true);
        let d = decide(&cj, &schedule, &tz, &[done], clock.now());
        assert_eq!(d.start.map(|s| s.1), Some(ts("2026-01-01T00:01:00Z")));
    }

    #[test]
    fn missed_runs_and_the_starting_deadline() {
        // Down for three hours with an every-minute schedule: 180 missed, the latest runs.
        let cj = cronjob("* * * * *", "Allow", "2026-01-01T00:00:00Z");
        let (schedule, tz) = schedule_of(&cj).unwrap();
        let now = ts("2026-01-01T03:00:20Z");
        let d = decide(&cj, &schedule, &tz, &[], now);
        assert_eq!(d.missed, 180);
        assert!(d.missed > MAX_MISSED_WARNING);
        assert_eq!(d.start.map(|s| s.1), Some(ts("2026-01-01T03:00:00Z")));
        // A 10 s starting deadline: the 03:00 run is 20 s late and is skipped.
        let mut late = cronjob("* * * * *", "Allow", "2026-01-01T00:00:00Z");
        late.spec.starting_deadline_seconds = Some(10);
        let d = decide(&late, &schedule, &tz, &[], now);
        assert_eq!((d.start, d.missed), (None, 0));
        assert_eq!(d.next, Some(ts("2026-01-01T03:01:00Z")));
    }

    #[test]
    fn bad_schedule_and_time_zone_name_the_field() {
        let mut cj = cronjob("not a schedule", "Allow", "2026-01-01T00:00:00Z");
        assert_eq!(schedule_of(&cj).unwrap_err().0, "spec.schedule");
        cj.spec.schedule = "@daily".into();
        cj.spec.time_zone = Some("Mars/Olympus".into());
        assert_eq!(schedule_of(&cj).unwrap_err().0, "spec.timeZone");
    }
}
