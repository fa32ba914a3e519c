//! Strategies for the request-decoding property tests: paths, query strings, media types,
//! `Authorization` values and bodies — real objects with garbage put in, patches of every
//! flavour, raw bytes — plus the object kinds the server is seeded with.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::sync::OnceLock;

use axum::http::Method;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A kind the fuzzer writes: its collection path and a valid object.
pub struct Kind {
    /// `Pod`.
    pub kind: &'static str,
    /// `v1`.
    pub api_version: &'static str,
    /// Where objects of the kind are created.
    pub collection: &'static str,
    /// Everything but apiVersion, kind and metadata.name of a valid object.
    pub body: fn() -> Value,
}

/// The kinds written, each seeded with an object named `seed`.
pub const KINDS: &[Kind] = &[
    Kind {
        kind: "Pod",
        api_version: "v1",
        collection: "/api/v1/namespaces/default/pods",
        body: || {
            json!({"spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "b"}]}],
            "nodeSelector": {"a": "b"}, "tolerations": [{"key": "k", "operator": "Exists"}]}})
        },
    },
    Kind {
        kind: "Secret",
        api_version: "v1",
        collection: "/api/v1/namespaces/default/secrets",
        body: || json!({"type": "Opaque", "data": {"k": "dmFsdWU="}, "stringData": {"s": "t"}}),
    },
    Kind {
        kind: "ConfigMap",
        api_version: "v1",
        collection: "/api/v1/namespaces/default/configmaps",
        body: || json!({"data": {"k": "v"}, "binaryData": {"b": "AAE="}}),
    },
    Kind {
        kind: "Node",
        api_version: "v1",
        collection: "/api/v1/nodes",
        body: || {
            json!({"spec": {"podCIDR": "10.0.0.0/24", "taints": [{"key": "k",
            "effect": "NoSchedule"}]}, "status": {"capacity": {"cpu": "4"}}})
        },
    },
    Kind {
        kind: "Namespace",
        api_version: "v1",
        collection: "/api/v1/namespaces",
        body: || json!({"metadata": {"labels": {"a": "b"}}}),
    },
    Kind {
        kind: "Deployment",
        api_version: "apps/v1",
        collection: "/apis/apps/v1/namespaces/default/deployments",
        body: || {
            json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
        },
    },
    Kind {
        kind: "Job",
        api_version: "batch/v1",
        collection: "/apis/batch/v1/namespaces/default/jobs",
        body: || {
            json!({"spec": {"completions": 1, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})
        },
    },
    Kind {
        kind: "TrainingJob",
        api_version: "coxswain.dev/v1alpha1",
        collection: "/apis/coxswain.dev/v1alpha1/namespaces/default/trainingjobs",
        body: || {
            json!({"spec": {"replicaGroups": [{"name": "w", "replicas": 2,
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}]}})
        },
    },
];

/// A valid object of `kind` named `name`.
pub fn template(kind: &Kind, name: &str) -> Value {
    let mut object = (kind.body)();
    object["apiVersion"] = json!(kind.api_version);
    object["kind"] = json!(kind.kind);
    object["metadata"]["name"] = json!(name);
    object
}

pub fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A path segment: a real one most of the time, else arbitrary (percent-encoded) bytes.
pub fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "api", "apis", "v1", "v1alpha1", "v2", "namespaces", "default", "kube-system",
            "pods", "secrets", "configmaps", "nodes", "events", "status", "log", "binding",
            "eviction", "scale", "apps", "deployments", "batch", "jobs", "coxswain.dev",
            "trainingjobs", "kubeflow.org", "pytorchjobs", "openapi", "v3", "version", "x",
            "", "..", ".", "%2F", "%00", "%FF", "a%20b", "UPPER",
        ])
        .prop_map(str::to_string),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| percent_encode(&b)),
        1 => "[a-z0-9.-]{0,70}",
    ]
}

pub fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

/// A query value: plausible selectors and numbers, or anything.
pub fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "true",
            "false",
            "1",
            "0",
            "-1",
            "18446744073709551616",
            "9223372036854775807",
            "app=web",
            "app!=web",
            "app in (a,b)",
            "app notin (",
            "!app",
            "app",
            "a=b,c",
            "metadata.name=x",
            "spec.nodeName=",
            "status.phase!=Running",
            "==",
            "a==b",
            "x in ()",
            "a=b=c",
            "All",
            "Strict",
            "Warn",
            "Ignore",
            "NotOlderThan",
            "Exact",
            "Foreground",
            "Orphan",
            "Background",
            "eyJ2IjoxfQ",
            "not-a-token",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,40}",
        prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

pub fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        8 => prop::sample::select(vec![
            "labelSelector", "fieldSelector", "limit", "continue", "watch", "resourceVersion",
            "resourceVersionMatch", "timeoutSeconds", "allowWatchBookmarks", "sendInitialEvents",
            "dryRun", "fieldValidation", "fieldManager", "force", "propagationPolicy",
            "gracePeriodSeconds", "pretty", "includeObject", "container", "follow", "tailLines",
            "sinceSeconds", "previous", "timestamps", "limitBytes",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{0,12}",
    ];
    prop::collection::vec((name, query_value()), 0..5).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    percent_encode(k.as_bytes()),
                    percent_encode(v.as_bytes())
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

pub fn media_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "application/json", "application/yaml", "application/json-patch+json",
            "application/merge-patch+json", "application/strategic-merge-patch+json",
            "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf",
            "application/json;as=Table;v=v1;g=meta.k8s.io", "application/json;as=Table",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            "text/plain", "*/*", "application/*", "application/json; charset=utf-8",
            "application/json;;;", ";", "", "application/json, application/yaml;q=0.5",
            "application/yaml;q=abc",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => Just(None),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

pub fn authorization() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        2 => Just(None),
        2 => prop::sample::select(vec![
            "Bearer", "Bearer ", "Bearer abcdef.0123456789abcdef", "Basic Zm9vOmJhcg==",
            "Basic !!!", "bearer x", "Negotiate", "Bearer a.b.c", "Bearer \u{7f}",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Some),
        1 => "Bearer [ -~]{0,60}".prop_map(|s| Some(s.into_bytes())),
    ]
}

/// A string a field might hold: quantities, times, enum values, names, or anything.
pub fn leaf_string() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        prop::sample::select(vec![
            "1Gi",
            "-1",
            "1e400",
            "0.5m",
            "NaN",
            "99999999999999999999Ei",
            "2024-01-01T00:00:00Z",
            "not-a-time",
            "Exists",
            "Equal",
            "NoSchedule",
            "Never",
            "Always",
            "",
            "default",
            "seed",
            "a/b",
            "../x",
            "~",
            "\u{0}",
            "v1",
            "apps/v1",
            "-",
            "A_B",
            "a..b",
            "nvidia.com/gpu",
            "10.0.0.0/33",
            "TCP",
            "UDP",
            "IfNotPresent",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,20}",
        "[a-z0-9.-]{0,70}",
    ]
}

/// Any JSON value, up to a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> + Clone {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,16}".prop_map(Value::from),
        ".*".prop_map(Value::from),
        leaf_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(field_name(), inner, 0..6,)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer inside `value` (its containers and leaves).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One change to a valid object.
#[derive(Clone, Debug)]
enum Mutation {
    /// The value at a pointer becomes any JSON.
    Replace(Value),
    /// A scalar at a pointer gets another value of its type (reaches validation, not decoding).
    SameType(String, i64),
    /// A field is added to the object at a pointer.
    Add(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> + Clone {
    prop_oneof![
        2 => json_value().prop_map(Mutation::Replace),
        3 => (leaf_string(), any::<i64>()).prop_map(|(s, n)| Mutation::SameType(s, n)),
        2 => (field_name(), json_value()).prop_map(|(f, v)| Mutation::Add(f, v)),
    ]
}

/// `object` with `mutation` applied at one of its pointers.
fn mutate(mut object: Value, at: prop::sample::Index, mutation: Mutation) -> Value {
    let mut all = Vec::new();
    pointers(&object, String::new(), &mut all);
    let pointer = &all[at.index(all.len())];
    let Some(target) = object.pointer_mut(pointer) else {
        return object;
    };
    match mutation {
        Mutation::Replace(new) => *target = new,
        Mutation::SameType(text, number) => match target {
            Value::String(s) => *s = text,
            Value::Number(_) => *target = Value::from(number),
            Value::Bool(b) => *b = !*b,
            _ => {}
        },
        Mutation::Add(field, new) => match target {
            Value::Object(map) => {
                map.insert(field, new);
            }
            Value::Array(items) => items.push(new),
            _ => {}
        },
    }
    object
}

/// A field name: real ones most of the time.
pub fn field_name() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        4 => prop::sample::select(vec![
            "name", "namespace", "labels", "annotations", "spec", "status", "containers",
            "image", "replicas", "data", "stringData", "type", "metadata", "finalizers",
            "ownerReferences", "resourceVersion", "uid", "generateName", "deletionTimestamp",
            "template", "selector", "matchLabels", "matchExpressions", "resources", "limits",
            "requests", "nodeName", "priorityClassName", "volumes", "ports", "env",
            "$patch", "$retainKeys", "$setElementOrder/containers", "$deleteFromPrimitiveList/finalizers",
            "managedFields", "generation", "creationTimestamp", "apiVersion", "kind",
        ])
        .prop_map(str::to_string),
        1 => "[a-zA-Z$/.~]{0,10}",
    ]
}

/// A valid object of `kind` named `name` with one to three garbage values put in.
pub fn garbage_object(kind: &'static Kind, name: String) -> impl Strategy<Value = Value> + Clone {
    prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4).prop_map(
        move |mutations| {
            mutations
                .into_iter()
                .fold(template(kind, &name), |object, (at, m)| {
                    mutate(object, at, m)
                })
        },
    )
}

/// A JSON patch (RFC 6902) of plausible and garbage operations.
pub fn json_patch() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        prop::sample::select(vec![
            "/metadata/labels/a",
            "/metadata/labels",
            "/spec/containers/0/image",
            "/spec/containers/-",
            "/spec/replicas",
            "/data/k",
            "/metadata/finalizers/0",
            "/metadata/name",
            "/metadata/resourceVersion",
            "",
            "/",
            "/spec/containers/99",
            "/spec/containers/-1",
            "/metadata/annotations/a~1b",
            "/x~2",
            "no-slash",
        ])
        .prop_map(str::to_string),
        "(/[a-z0-9~-]{0,6}){0,4}",
    ];
    let op = prop::sample::select(vec![
        "add", "remove", "replace", "move", "copy", "test", "bogus",
    ]);
    prop::collection::vec((op, path.clone(), path, json_value()), 0..4).prop_map(|ops| {
        Value::Array(
            ops.into_iter()
                .map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}))
                .collect(),
        )
    })
}

/// A write of `kind`: POST or PUT of a garbage object as JSON or YAML, or a PATCH of every
/// flavour with the media type it needs, now and then cut short or replaced by raw bytes.
pub fn write(
    kind: &'static Kind,
    name: String,
) -> impl Strategy<Value = (Method, Vec<u8>, &'static str)> {
    let object = garbage_object(kind, name);
    let json = |v: Value| v.to_string().into_bytes();
    let yaml = |v: Value| yaml_serde::to_string(&v).unwrap_or_default().into_bytes();
    let put_or_post = prop::sample::select(vec![Method::POST, Method::PUT]);
    prop_oneof![
        3 => (put_or_post.clone(), object.clone()).prop_map(move |(m, v)| (m, json(v), "application/json")),
        2 => (put_or_post.clone(), object.clone()).prop_map(move |(m, v)| (m, yaml(v), "application/yaml")),
        2 => object.clone().prop_map(move |v| (Method::PATCH, json(v), "application/merge-patch+json")),
        2 => object.clone().prop_map(move |v| (Method::PATCH, json(v), "application/strategic-merge-patch+json")),
        2 => object.clone().prop_map(move |v| (Method::PATCH, yaml(v), "application/apply-patch+yaml")),
        2 => json_patch().prop_map(move |v| (Method::PATCH, json(v), "application/json-patch+json")),
        1 => (put_or_post.clone(), object, any::<prop::sample::Index>()).prop_map(move |(m, v, cut)| {
            let text = json(v);
            let at = cut.index(text.len() + 1);
            (m, text[..at].to_vec(), "application/json")
        }),
        1 => (put_or_post, prop::collection::vec(any::<u8>(), 0..256)).prop_map(|(m, b)| (m, b, "application/yaml")),
    ]
}

/// A query a write takes: valid most of the time.
pub fn write_query() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", "dryRun=All", "fieldValidation=Strict", "fieldValidation=Warn",
            "fieldValidation=Ignore", "fieldManager=fuzz", "fieldManager=fuzz&force=true",
            "dryRun=All&fieldValidation=Strict",
        ])
        .prop_map(str::to_string),
        1 => query(),
    ]
}

/// A path under a real resource: its collection, the seeded object or another name, and maybe
/// a subresource.
pub fn resource_path() -> impl Strategy<Value = (usize, Option<String>, String)> {
    let name = prop_oneof![
        2 => Just(Some("seed".to_string())),
        1 => Just(None),
        1 => "[a-z0-9.-]{1,70}".prop_map(Some),
    ];
    let subresource = prop_oneof![
        4 => Just(String::new()),
        1 => prop::sample::select(vec!["/status", "/log", "/scale", "/binding", "/eviction",
            "/status/x", "/proxy", "/exec"]).prop_map(str::to_string),
    ];
    (0..KINDS.len(), name, subresource)
}

/// Any path: under a real resource most of the time, else made of loose segments.
pub fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => resource_path().prop_map(|(kind, name, sub)| match name {
            Some(name) => format!("{}/{}{}", KINDS[kind].collection, name, sub),
            None => format!("{}{}", KINDS[kind].collection, sub),
        }),
        1 => path(),
    ]
}

/// Any body: raw bytes, any JSON or YAML, or an object of a real kind with garbage in it.
pub fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| yaml_serde::to_string(&v).unwrap_or_default().into_bytes()),
        2 => (0..KINDS.len()).prop_flat_map(|k| write(&KINDS[k], "seed".to_string())).prop_map(|(_, b, _)| b),
    ]
}

/// Any method the API might see.
pub fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ])
}

/// One runtime for every property and case.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}
