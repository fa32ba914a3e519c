//! Unit tests of the device manager's pure parts: applying edits to an OCI spec,
//! CDI resolution, registration checks, planning and the double-allocation rule,
//! the checkpoint, and the stage of an agent without a device manager.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use coxswain_api::k8s::{Container, Pod};
use coxswain_proto::deviceplugin::v1beta1::{
    ContainerAllocateResponse, DeviceSpec, Mount, RegisterRequest,
};
use oci_spec::runtime::Spec;

use super::apply::{NodeInfo, NodeStat, apply_edits};
use super::cdi::CdiResolver;
use super::checkpoint::{Checkpoint, ContainerAllocation, HeldDevice, PodDevices};
use super::plan::{check_free, free_devices, plan};
use super::registration::validate;
use super::*;
use crate::runtime::{ContainerConfig, build_spec};

struct FakeNodes;

impl NodeStat for FakeNodes {
    fn stat(&self, path: &Path) -> Result<NodeInfo, String> {
        let name = path.file_name().unwrap().to_string_lossy();
        match name.strip_prefix("nvidia") {
            Some("ctl") => Ok(NodeInfo {
                block: false,
                major: 195,
                minor: 255,
                mode: 0o666,
            }),
            Some(n) => Ok(NodeInfo {
                block: false,
                major: 195,
                minor: n.parse().map_err(|_| "no such node".to_string())?,
                mode: 0o666,
            }),
            None => Err("No such file or directory (os error 2)".into()),
        }
    }
}

fn base_spec() -> Spec {
    build_spec(&ContainerConfig {
        args: vec!["true".into()],
        env: vec!["CUDA_VISIBLE_DEVICES=wrong".into(), "KEEP=1".into()],
        ..Default::default()
    })
    .unwrap()
}

fn response() -> ContainerAllocateResponse {
    ContainerAllocateResponse {
        envs: [("CUDA_VISIBLE_DEVICES".to_string(), "GPU-1".to_string())]
            .into_iter()
            .collect(),
        devices: vec![
            DeviceSpec {
                container_path: "/dev/nvidia1".into(),
                host_path: "/sim/nvidia1".into(),
                permissions: "rw".into(),
            },
            DeviceSpec {
                container_path: "/dev/nvidiactl".into(),
                host_path: "/sim/nvidiactl".into(),
                permissions: "rw".into(),
            },
        ],
        mounts: vec![Mount {
            container_path: "/usr/bin/nvidia-smi".into(),
            host_path: "/usr/bin/nvidia-smi".into(),
            read_only: true,
        }],
        annotations: [(
            "coxswain.dev/simulated-gpus".to_string(),
            "true".to_string(),
        )]
        .into_iter()
        .collect(),
        cdi_devices: Vec::new(),
    }
}

#[test]
fn allocate_response_becomes_nodes_allow_rules_env_mounts_and_annotations() {
    let mut spec = base_spec();
    apply_edits(
        &mut spec,
        &ContainerEdits::from_response(&response()),
        &FakeNodes,
    )
    .unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    let devices = json["linux"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["path"], "/dev/nvidia1");
    assert_eq!(devices[0]["type"], "c");
    assert_eq!(
        (devices[0]["major"].as_i64(), devices[0]["minor"].as_i64()),
        (Some(195), Some(1))
    );
    let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
    // The default deny stays first; exactly one allow rule per node follows it.
    assert_eq!(rules[0]["allow"], false);
    assert_eq!(rules[0]["access"], "rwm");
    let allowed: Vec<(i64, i64, &str)> = rules[1..]
        .iter()
        .map(|r| {
            assert_eq!(r["allow"], true);
            (
                r["major"].as_i64().unwrap(),
                r["minor"].as_i64().unwrap(),
                r["access"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(allowed, vec![(195, 1, "rw"), (195, 255, "rw")]);
    let env: Vec<&str> = json["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"CUDA_VISIBLE_DEVICES=GPU-1"), "{env:?}");
    assert!(!env.contains(&"CUDA_VISIBLE_DEVICES=wrong"), "{env:?}");
    assert!(env.contains(&"KEEP=1"));
    let mounts = json["mounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["destination"] == "/usr/bin/nvidia-smi"
                && m["options"].as_array().unwrap().iter().any(|o| o == "ro"))
    );
    assert_eq!(json["annotations"]["coxswain.dev/simulated-gpus"], "true");
}

#[test]
fn a_missing_node_or_bad_permissions_is_an_error_naming_the_path() {
    let mut bad = response();
    bad.devices[0].host_path = "/sim/gone".into();
    let err = apply_edits(
        &mut base_spec(),
        &ContainerEdits::from_response(&bad),
        &FakeNodes,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("device node /sim/gone: No such file"),
        "{err}"
    );
    let mut bad = response();
    bad.devices[0].permissions = "rwx".into();
    let err = apply_edits(
        &mut base_spec(),
        &ContainerEdits::from_response(&bad),
        &FakeNodes,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("permissions \"rwx\""), "{err}");
}

const CDI_JSON: &str = r#"{
  "cdiVersion": "0.6.0",
  "kind": "nvidia.com/gpu",
  "devices": [
    {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0", "hostPath": "/sim/nvidia0"}]}},
    {"name": "GPU-1", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia1", "type": "c", "major": 195, "minor": 1}],
                                         "env": ["ONE=1"]}}
  ],
  "containerEdits": {
    "env": ["NVIDIA_DRIVER=550"],
    "deviceNodes": [{"path": "/dev/nvidiactl", "hostPath": "/sim/nvidiactl"}],
    "mounts": [{"hostPath": "/lib/libcuda.so.1", "containerPath": "/lib/libcuda.so.1", "options": ["ro", "nosuid", "bind"]}]
  }
}"#;

const CDI_YAML: &str = "cdiVersion: 0.6.0\nkind: example.com/nic\ndevices:\n- name: eth1\n  containerEdits:\n    env: [NIC=eth1]\n";

#[test]
fn cdi_names_resolve_to_device_and_spec_edits_from_json_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nvidia.json"), CDI_JSON).unwrap();
    std::fs::write(dir.path().join("nic.yaml"), CDI_YAML).unwrap();
    std::fs::write(dir.path().join("broken.json"), "{").unwrap();
    let cdi = CdiResolver::new(vec![dir.path().join("missing"), dir.path().to_path_buf()]);
    let edits = cdi.resolve("nvidia.com/gpu=0").unwrap();
    assert_eq!(edits.env, vec!["NVIDIA_DRIVER=550"]);
    let nodes: Vec<(&str, &str)> = edits
        .device_nodes
        .iter()
        .map(|n| (n.host_path.as_str(), n.container_path.as_str()))
        .collect();
    assert_eq!(
        nodes,
        vec![
            ("/sim/nvidia0", "/dev/nvidia0"),
            ("/sim/nvidiactl", "/dev/nvidiactl")
        ]
    );
    assert_eq!(edits.mounts[0].options, vec!["ro", "nosuid", "bind"]);
    let one = cdi.resolve("nvidia.com/gpu=GPU-1").unwrap();
    assert_eq!(one.env, vec!["ONE=1", "NVIDIA_DRIVER=550"]);
    // Type and numbers given in the spec are used without a stat of the host.
    let mut spec = base_spec();
    let mut only_gpu = one.clone();
    only_gpu.device_nodes.truncate(1);
    apply_edits(&mut spec, &only_gpu, &FakeNodes).unwrap();
    assert_eq!(
        cdi.resolve("example.com/nic=eth1").unwrap().env,
        vec!["NIC=eth1"]
    );
    let err = cdi.resolve("nvidia.com/gpu=7").unwrap_err().to_string();
    assert!(
        err.starts_with("CDI device nvidia.com/gpu=7: no CDI spec in"),
        "{err}"
    );
    let err = cdi.resolve("gpu0").unwrap_err().to_string();
    assert!(err.contains("not a fully qualified CDI name"), "{err}");
}

fn register(version: &str, resource: &str, endpoint: &str) -> RegisterRequest {
    RegisterRequest {
        version: version.into(),
        endpoint: endpoint.into(),
        resource_name: resource.into(),
        options: None,
    }
}

#[test]
fn registration_checks_version_resource_name_and_endpoint() {
    assert!(validate(&register("v1beta1", "nvidia.com/gpu", "nvidia-gpu.sock")).is_ok());
    assert!(validate(&register("v1beta1", "example.com/fpga_x", "a.sock")).is_ok());
    let status = validate(&register("v1alpha", "nvidia.com/gpu", "a.sock")).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("version \"v1alpha\": unsupported"),
        "{}",
        status.message()
    );
    for bad in [
        "gpu",
        "nvidia/gpu",
        "nvidia.com/",
        "/gpu",
        "kubernetes.io/gpu",
        "NVIDIA.com/gpu",
        "nvidia.com/gpu/x",
    ] {
        let status = validate(&register("v1beta1", bad, "a.sock")).unwrap_err();
        assert!(
            status
                .message()
                .starts_with(&format!("resource_name {bad:?}: must be")),
            "{bad}: {}",
            status.message()
        );
    }
    for bad in ["", "../x.sock", "kubelet.sock"] {
        let status = validate(&register("v1beta1", "nvidia.com/gpu", bad)).unwrap_err();
        assert!(
            status.message().starts_with("endpoint"),
            "{}",
            status.message()
        );
    }
}

fn container(name: &str, resources: &[(&str, &str)]) -> Container {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "image": "busybox",
        "resources": {"limits": resources.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
    }))
    .unwrap()
}

fn pod(annotation: Option<&str>, containers: Vec<Container>) -> Pod {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "uid": "uid-1"},
        "spec": {"containers": containers},
    }))
    .unwrap();
    if let Some(a) = annotation {
        pod.metadata.annotations = Some(
            [(
                annotation::GPU_DEVICES_ANNOTATION.to_string(),
                a.to_string(),
            )]
            .into(),
        );
    }
    pod
}

#[test]
fn annotated_devices_are_split_across_containers_in_order() {
    let a = container("a", &[("nvidia.com/gpu", "2"), ("cpu", "1")]);
    let b = container("b", &[("nvidia.com/gpu", "1")]);
    let plain = container("c", &[("cpu", "1")]);
    let p = pod(
        Some(r#"["G0","G1","G2"]"#),
        vec![a.clone(), b.clone(), plain.clone()],
    );
    let pa = plan(&p, &a).unwrap();
    assert_eq!(pa.len(), 1);
    assert_eq!(
        pa[0].chosen.as_deref(),
        Some(&["G0".to_string(), "G1".to_string()][..])
    );
    assert_eq!(
        plan(&p, &b).unwrap()[0].chosen.as_deref(),
        Some(&["G2".to_string()][..])
    );
    assert!(plan(&p, &plain).unwrap().is_empty());
    let short = pod(Some(r#"["G0","G1"]"#), vec![a.clone(), b.clone()]);
    let err = plan(&short, &b).unwrap_err().to_string();
    assert!(
        err.contains("lists 2 whole device(s) but container \"b\" needs 1"),
        "{err}"
    );
    let share = container("s", &[("coxswain.dev/gpu-milli", "250")]);
    let ps = pod(Some(r#"["G3:250"]"#), vec![share.clone()]);
    let request = &plan(&ps, &share).unwrap()[0];
    assert_eq!(
        (request.plugin_resource.as_str(), request.milli),
        ("nvidia.com/gpu", 250)
    );
    assert_eq!(request.chosen.as_deref(), Some(&["G3".to_string()][..]));
    let none = pod(None, vec![a.clone()]);
    assert_eq!(plan(&none, &a).unwrap()[0].chosen, None);
}

#[test]
fn a_device_is_never_held_beyond_its_whole() {
    let mut holders = BTreeMap::new();
    holders.insert(
        "G0".to_string(),
        BTreeMap::from([("other".to_string(), 1000u16)]),
    );
    holders.insert(
        "G1".to_string(),
        BTreeMap::from([("other".to_string(), 600u16)]),
    );
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let err = check_free(&holders, &ids(&["G0"]), 1000, "me")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "device G0 is already allocated to pod other");
    assert!(check_free(&holders, &ids(&["G1"]), 400, "me").is_ok());
    assert!(check_free(&holders, &ids(&["G1"]), 500, "me").is_err());
    assert!(check_free(&holders, &ids(&["G0"]), 1000, "other").is_ok());
    assert_eq!(
        free_devices(&holders, &ids(&["G0", "G1", "G2"]), 1000, "me"),
        ids(&["G2"])
    );
    assert_eq!(
        free_devices(&holders, &ids(&["G0", "G1", "G2"]), 300, "me"),
        ids(&["G1", "G2"])
    );
}

#[test]
fn checkpoint_round_trips_atomically_and_drops_dead_pods() {
    let dir = tempfile::tempdir().unwrap();
    let path = Checkpoint::path(dir.path());
    assert_eq!(Checkpoint::load(&path).unwrap(), Checkpoint::empty());
    let mut checkpoint = Checkpoint::empty();
    for uid in ["a", "b"] {
        checkpoint.pods.insert(
            uid.into(),
            PodDevices {
                namespace: "default".into(),
                name: format!("pod-{uid}"),
                containers: BTreeMap::from([(
                    "main".to_string(),
                    vec![ContainerAllocation {
                        resource: "nvidia.com/gpu".into(),
                        plugin_resource: "nvidia.com/gpu".into(),
                        devices: vec![HeldDevice {
                            id: format!("G-{uid}"),
                            milli: 1000,
                        }],
                        response: (&response()).into(),
                    }],
                )]),
            },
        );
    }
    checkpoint.save(&path).unwrap();
    assert!(!path.with_extension("json.tmp").exists());
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded, checkpoint);
    let back = ContainerAllocateResponse::from(&loaded.pods["a"].containers["main"][0].response);
    assert_eq!(back, response());
    assert_eq!(loaded.holders()["G-b"]["b"], 1000);
    let mut kept = loaded.clone();
    assert!(kept.retain_pods(&BTreeSet::from(["b".to_string()])));
    assert_eq!(kept.pods.keys().collect::<Vec<_>>(), vec!["b"]);
    std::fs::write(&path, "{not json").unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("device checkpoint {}:", path.display())),
        "{err}"
    );
}

#[test]
fn an_agent_without_devices_refuses_gpu_containers_with_a_reason() {
    let gpu = container("train", &[("nvidia.com/gpu", "1")]);
    let p = pod(None, vec![gpu.clone()]);
    let err = NoDevices
        .prepare_container(&p, &gpu, &mut base_spec())
        .unwrap_err();
    assert_eq!(err.reason(), "UnexpectedAdmissionError");
    assert!(
        err.to_string()
            .contains("requests nvidia.com/gpu but this agent has no device manager"),
        "{err}"
    );
    let plain = container("web", &[("cpu", "1"), ("memory", "1Gi")]);
    let mut spec = base_spec();
    NoDevices.prepare_container(&p, &plain, &mut spec).unwrap();
    assert_eq!(spec, base_spec());
}
