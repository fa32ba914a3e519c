//! The example manifests in `examples/` decode, validate, and match `docs/api.md`.

use coxswain_api::defaulting::{apply_defaults, pod_group_for};
use coxswain_api::validation::validate;
use coxswain_api::{Object, decode};

const EXAMPLES: [(&str, &str); 4] = [
    (
        "trainingjob.yaml",
        include_str!("../../../examples/trainingjob.yaml"),
    ),
    (
        "podgroup.yaml",
        include_str!("../../../examples/podgroup.yaml"),
    ),
    ("queue.yaml", include_str!("../../../examples/queue.yaml")),
    (
        "priorityclass.yaml",
        include_str!("../../../examples/priorityclass.yaml"),
    ),
];

const DOCS: &str = include_str!("../../../docs/api.md");

fn decode_example(name: &str, text: &str) -> Vec<Object> {
    decode(text.as_bytes()).unwrap_or_else(|e| panic!("examples/{name}: {e}"))
}

#[test]
fn examples_are_valid_before_and_after_defaulting() {
    for (name, text) in EXAMPLES {
        let objects = decode_example(name, text);
        assert!(!objects.is_empty(), "examples/{name} holds no object");
        for mut object in objects {
            assert_eq!(validate(&object), vec![], "examples/{name}");
            apply_defaults(&mut object);
            assert_eq!(
                validate(&object),
                vec![],
                "examples/{name} after defaulting"
            );
        }
    }
}

#[test]
fn examples_have_the_expected_kinds() {
    let kinds = |name, text| -> Vec<&'static str> {
        decode_example(name, text)
            .iter()
            .map(Object::kind)
            .collect()
    };
    assert_eq!(
        kinds("trainingjob.yaml", EXAMPLES[0].1),
        vec!["TrainingJob"]
    );
    assert_eq!(kinds("podgroup.yaml", EXAMPLES[1].1), vec!["PodGroup"]);
    assert_eq!(kinds("queue.yaml", EXAMPLES[2].1), vec!["Queue", "Queue"]);
    assert_eq!(
        kinds("priorityclass.yaml", EXAMPLES[3].1),
        vec!["PriorityClass"]
    );
}

#[test]
fn example_training_job_gangs_all_its_pods() {
    let objects = decode_example("trainingjob.yaml", EXAMPLES[0].1);
    let Some(Object::TrainingJob(job)) = objects.first() else {
        panic!("examples/trainingjob.yaml must hold a TrainingJob");
    };
    let group = pod_group_for(job);
    assert_eq!(group.spec.min_member, 4);
    assert_eq!(validate(&Object::PodGroup(group)), vec![]);
}

#[test]
fn docs_show_the_example_manifests() {
    for (name, text) in EXAMPLES {
        // The docs carry each manifest without its leading comment lines.
        let manifest: String = text
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            DOCS.contains(&manifest),
            "docs/api.md must show examples/{name} verbatim"
        );
    }
}

/// The workload examples under `examples/workloads/`: one object each, of the kind the file
/// is named after, valid before and after defaulting.
#[test]
fn workload_examples_are_valid() {
    let examples = [
        ("Job", include_str!("../../../examples/workloads/job.yaml")),
        (
            "Deployment",
            include_str!("../../../examples/workloads/deployment.yaml"),
        ),
        (
            "DaemonSet",
            include_str!("../../../examples/workloads/daemonset.yaml"),
        ),
        (
            "CronJob",
            include_str!("../../../examples/workloads/cronjob.yaml"),
        ),
    ];
    for (kind, text) in examples {
        let mut objects = decode_example(kind, text);
        assert_eq!(objects.len(), 1, "examples/workloads: one {kind}");
        let mut object = objects.remove(0);
        assert_eq!(object.kind(), kind, "examples/workloads/{kind}");
        assert_eq!(validate(&object), vec![], "examples/workloads: {kind}");
        apply_defaults(&mut object);
        assert_eq!(validate(&object), vec![], "{kind} after defaulting");
    }
}
