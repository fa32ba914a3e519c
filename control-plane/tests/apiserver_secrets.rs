//! A Secret's `stringData` over HTTP, as kube-apiserver treats it: folded into `data`
//! (base64) on create, update, merge patch and server-side apply, winning over `data` for
//! the same key, and never stored or returned; data keys are validated (a bad key, from
//! `data` or `stringData`, is a 422 naming `data[<key>]`).

mod apiserver_support;

use apiserver_support::{Backend, TestServer, client};
use reqwest::Method;
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

async fn send(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    ct: &str,
    body: &Value,
) -> (u16, Value) {
    let response = c
        .request(method, url)
        .header("content-type", ct)
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let code = response.status().as_u16();
    (code, response.json().await.expect("JSON body"))
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn string_data_is_folded_into_data_and_never_stored() {
    let server = TestServer::start(Backend::Embedded).await.expect("server");
    let c = client();
    let collection = server.at(SECRETS);
    let url = format!("{collection}/db");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "data": {"user": b64("old"), "host": b64("db.local")},
        "stringData": {"user": "admin", "password": "s3cret"},
    });
    let (code, created) = send(&c, Method::POST, &collection, "application/json", &secret).await;
    assert_eq!(code, 201, "{created}");
    let expected =
        json!({"user": b64("admin"), "host": b64("db.local"), "password": b64("s3cret")});
    assert_eq!(created["data"], expected);
    assert!(created.get("stringData").is_none(), "{created}");
    let read: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(read["data"], expected);
    assert!(read.get("stringData").is_none(), "{read}");
    let stored = server
        .store
        .get("/registry/core/secrets/default/db")
        .await
        .unwrap()
        .expect("stored");
    assert!(!String::from_utf8_lossy(&stored.value).contains("stringData"));

    // Update: stringData changes one key, the rest of data stays as sent.
    let mut update = read.clone();
    update["stringData"] = json!({"password": "rotated"});
    let (code, updated) = send(&c, Method::PUT, &url, "application/json", &update).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["data"]["password"], b64("rotated"));
    assert_eq!(updated["data"]["host"], b64("db.local"));
    assert!(updated.get("stringData").is_none(), "{updated}");

    // Merge patch and server-side apply.
    let patch = json!({"stringData": {"host": "db.remote"}});
    let (code, patched) = send(
        &c,
        Method::PATCH,
        &url,
        "application/merge-patch+json",
        &patch,
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"]["host"], b64("db.remote"));
    assert!(patched.get("stringData").is_none(), "{patched}");
    let applied = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "applied"},
        "stringData": {"token": "t0ken"},
    });
    let (code, body) = send(
        &c,
        Method::PATCH,
        &format!("{collection}/applied?fieldManager=test"),
        "application/apply-patch+yaml",
        &applied,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["data"], json!({"token": b64("t0ken")}));
    assert!(body.get("stringData").is_none(), "{body}");
}

#[tokio::test]
async fn bad_data_keys_are_refused_naming_the_field() {
    let server = TestServer::start(Backend::Embedded).await.expect("server");
    let c = client();
    let collection = server.at(SECRETS);
    for (field, bad) in [("stringData", "bad key"), ("data", "..hidden")] {
        let value = if field == "data" {
            b64("x")
        } else {
            "x".to_string()
        };
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
            field: {bad: value},
        });
        let (code, status) = send(&c, Method::POST, &collection, "application/json", &secret).await;
        assert_eq!(code, 422, "{status}");
        let causes = status["details"]["causes"].as_array().expect("causes");
        assert_eq!(causes[0]["field"], format!("data[{bad}]"), "{status}");
        assert_eq!(causes[0]["reason"], "FieldValueInvalid", "{status}");
    }
    let tls = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
        "type": "kubernetes.io/tls", "stringData": {"tls.crt": "cert"},
    });
    let (code, status) = send(&c, Method::POST, &collection, "application/json", &tls).await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("data[tls.key]: Required value"),
        "{status}"
    );
}
