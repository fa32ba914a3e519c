//! The API server serves Kubeflow's `PyTorchJob` (`kubeflow.org/v1`): discovery lists it,
//! `examples/pytorchjob.yaml` is accepted under strict field validation with Kubeflow's
//! defaults applied, a job breaking Kubeflow's rules is refused naming the field, and what
//! is stored converts to a `TrainingJob` owned by the job.

mod apiserver_support;

use apiserver_support::{Backend, TestServer, client};
use coxswain_api::kubeflow::to_training_job;
use coxswain_api::{Object, decode_value};
use reqwest::StatusCode;
use serde_json::{Value, json};

const EXAMPLE: &str = include_str!("../../examples/pytorchjob.yaml");
const JOBS: &str = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs";

async fn get(c: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let response = c.get(url).send().await.expect("request sent");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn pytorchjobs_are_served_defaulted_validated_and_convertible() {
    let s = TestServer::start(Backend::Embedded)
        .await
        .expect("server starts");
    let c = client();

    let groups = get(&c, s.at("/apis")).await.1;
    let kubeflow = groups["groups"]
        .as_array()
        .expect("a group list")
        .iter()
        .find(|g| g["name"] == "kubeflow.org")
        .unwrap_or_else(|| panic!("kubeflow.org is not discovered: {groups}"));
    assert_eq!(
        kubeflow["preferredVersion"]["groupVersion"],
        "kubeflow.org/v1"
    );
    let resources = get(&c, s.at("/apis/kubeflow.org/v1")).await.1;
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .expect("a resource list")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["pytorchjobs", "pytorchjobs/status"]);
    assert_eq!(resources["resources"][0]["kind"], "PyTorchJob");
    assert_eq!(resources["resources"][0]["namespaced"], true);

    // Every field of the example is known: strict validation accepts it.
    let response = c
        .post(s.at(&format!("{JOBS}?fieldValidation=Strict")))
        .header("content-type", "application/yaml")
        .body(EXAMPLE)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );

    let (status, stored) = get(&c, s.at(&format!("{JOBS}/pytorch-trainer"))).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let master = &stored["spec"]["pytorchReplicaSpecs"]["Master"];
    assert_eq!(
        master["template"]["spec"]["containers"][0]["ports"],
        json!([{"name": "pytorchjob-port", "containerPort": 23456}]),
        "Kubeflow's default port"
    );
    assert_eq!(
        stored["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"],
        2
    );
    let list = get(&c, s.at(JOBS)).await.1;
    assert_eq!(list["kind"], "PyTorchJobList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    let Ok(Object::PyTorchJob(job)) = decode_value(stored.clone()) else {
        panic!("the stored object decodes as a PyTorchJob: {stored}");
    };
    let training_job = to_training_job(&job).expect("the stored job converts");
    let owner = &training_job
        .metadata
        .owner_references
        .as_ref()
        .expect("owned")[0];
    assert_eq!(Some(owner.uid.as_str()), stored["metadata"]["uid"].as_str());

    let mut two_masters: Value = stored.clone();
    two_masters["metadata"] = json!({"name": "two-masters"});
    two_masters["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = json!(2);
    let response = c
        .post(s.at(JOBS))
        .json(&two_masters)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.expect("a Status");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.pytorchReplicaSpecs.Master.replicas")
            && message.contains("must be 1"),
        "{body}"
    );
}
