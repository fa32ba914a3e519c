//! Bad input gets a typed error naming the document, field and line.

use coxswain_api::{DecodeError, Object, decode, decode_one, decode_value};

fn error(input: &str) -> DecodeError {
    match decode(input.as_bytes()) {
        Ok(objects) => panic!("{input:?} decoded to {objects:?}"),
        Err(e) => e,
    }
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let e = error("apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n");
    assert!(
        matches!(
            e,
            DecodeError::Syntax {
                document: 1,
                line: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("document 1: "), "{e}");
}

#[test]
fn json_syntax_errors_name_the_line() {
    let e = error("{\"apiVersion\": \"v1\",\n \"kind\": }");
    assert!(
        matches!(e, DecodeError::Syntax { line: Some(2), .. }),
        "{e:?}"
    );
}

#[test]
fn type_fields_are_required() {
    assert_eq!(
        error("kind: Pod\n"),
        DecodeError::MissingTypeField {
            document: 1,
            field: "apiVersion"
        }
    );
    assert_eq!(
        error("apiVersion: v1\n"),
        DecodeError::MissingTypeField {
            document: 1,
            field: "kind"
        }
    );
    assert_eq!(
        error("apiVersion: 1\nkind: Pod\n"),
        DecodeError::MissingTypeField {
            document: 1,
            field: "apiVersion"
        }
    );
    assert_eq!(
        error("- a\n- b\n"),
        DecodeError::NotAnObject {
            document: 1,
            found: "a list"
        }
    );
    assert_eq!(
        error("hello"),
        DecodeError::NotAnObject {
            document: 1,
            found: "a string"
        }
    );
}

#[test]
fn unknown_kinds_are_named() {
    let e = error(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Pod\n",
    );
    assert_eq!(
        e,
        DecodeError::UnknownKind {
            document: 2,
            api_version: "apps/v1".into(),
            kind: "Pod".into()
        }
    );
    assert!(
        e.to_string()
            .contains("no kind \"Pod\" is served in \"apps/v1\""),
        "{e}"
    );
}

#[test]
fn yaml_field_errors_name_the_path_and_line() {
    let input = "apiVersion: coxswain.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: a}\nspec:\n  replicaGroups:\n    - name: w\n      replicas: two\n";
    let e = error(input);
    let DecodeError::Field {
        document,
        line,
        message,
        ..
    } = &e
    else {
        panic!("expected a field error, got {e:?}");
    };
    assert_eq!((*document, *line), (1, Some(7)));
    assert!(
        message.contains("spec.replicaGroups[0].replicas"),
        "{message}"
    );
}

#[test]
fn bad_enum_values_list_the_supported_ones() {
    let input = "apiVersion: coxswain.dev/v1alpha1\nkind: PodGroup\nmetadata: {name: a}\nspec:\n  minMember: 1\n  topology: {level: galaxy}\n";
    let message = error(input).to_string();
    assert!(message.contains("spec.topology.level"), "{message}");
    assert!(message.contains("block"), "{message}");
}

#[test]
fn json_field_errors_name_the_path_and_line() {
    let input = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\",\n \"metadata\": {\"name\": \"p\"},\n \"spec\": {\"containers\": [{\"name\": 5}]}}";
    let e = error(input);
    let DecodeError::Field {
        path,
        line,
        message,
        ..
    } = &e
    else {
        panic!("expected a field error, got {e:?}");
    };
    assert_eq!(path.as_deref(), Some("spec.containers[0].name"));
    assert_eq!(*line, Some(3));
    assert!(
        message.starts_with("spec.containers[0].name: invalid type"),
        "{message}"
    );
}

#[test]
fn values_decode_with_paths() {
    let value = serde_json::json!({"apiVersion": "coxswain.dev/v1alpha1", "kind": "Queue",
        "metadata": {"name": "q"}, "spec": {"weight": "heavy"}});
    let e = decode_value(value).expect_err("weight must be a number");
    assert!(
        matches!(&e, DecodeError::Field { path: Some(p), .. } if p == "spec.weight"),
        "{e:?}"
    );
}

#[test]
fn empty_documents_are_skipped_and_counts_checked() {
    assert_eq!(decode(b"").ok().map(|o| o.len()), Some(0));
    assert_eq!(decode(b"---\n---\n").ok().map(|o| o.len()), Some(0));
    let two = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
    let objects = decode(two.as_bytes()).expect("decodes");
    assert_eq!(
        objects.iter().map(Object::name).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(decode_one(two.as_bytes()), Err(DecodeError::WrongCount(2)));
    assert_eq!(decode_one(b"# nothing\n"), Err(DecodeError::WrongCount(0)));
}

#[test]
fn json_trailing_garbage_is_an_error() {
    let e = error(
        "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}} x",
    );
    assert!(matches!(e, DecodeError::Syntax { .. }), "{e:?}");
}

#[test]
fn yaml_flow_mappings_are_not_mistaken_for_json() {
    let object =
        decode_one(b"{apiVersion: v1, kind: Namespace, metadata: {name: ml}}").expect("decodes");
    assert_eq!((object.kind(), object.name()), ("Namespace", "ml"));
    // Broken JSON that is not YAML either reports the JSON error.
    assert!(matches!(
        error("{\"a\": }"),
        DecodeError::Syntax { line: Some(1), .. }
    ));
}

#[test]
fn objects_deserialize_through_serde() {
    let object: Object =
        serde_json::from_str(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ml"}}"#)
            .expect("decodes");
    assert_eq!(object.name(), "ml");
    let err = serde_json::from_str::<Object>(r#"{"apiVersion":"v2","kind":"Namespace"}"#)
        .expect_err("unknown kind");
    assert!(
        err.to_string()
            .contains("no kind \"Namespace\" is served in \"v2\""),
        "{err}"
    );
}
