//! Bootstrap tokens, as kubeadm makes them: a bearer token `<id>.<secret>`
//! (`[a-z0-9]{6}.[a-z0-9]{16}`) stands for the Secret `kube-system/bootstrap-token-<id>` of
//! type `bootstrap.kubernetes.io/token` holding `token-id`, `token-secret`, `expiration`
//! (RFC 3339) and `usage-bootstrap-authentication: "true"`. It authenticates as
//! `system:bootstrap:<id>` in `system:bootstrappers` (plus the `auth-extra-groups`) until it
//! expires; an expired, unknown or mismatching token is refused (401).

use std::collections::BTreeMap;
use std::sync::Arc;

use coxswain_api::k8s::Secret;

use super::{UserInfo, stored};
use crate::store::{Store, StoreError};

/// The namespace bootstrap-token secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// The secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The group every bootstrap token authenticates into.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";

/// Bootstrap tokens, looked up in a store.
#[derive(Clone)]
pub struct BootstrapTokens {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTokens").finish_non_exhaustive()
    }
}

/// The id and secret of a token shaped like a bootstrap token.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

impl BootstrapTokens {
    /// Bootstrap tokens stored in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The user `token` stands for; `None` when it is not a valid, unexpired bootstrap token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, StoreError> {
        let Some((id, secret)) = parse(token) else {
            return Ok(None);
        };
        let name = format!("bootstrap-token-{id}");
        let secret_object: Option<Secret> =
            stored::get(&*self.store, "v1", "Secret", Some(NAMESPACE), &name).await?;
        let Some(object) = secret_object else {
            return Ok(None);
        };
        Ok(user_of(&object, id, secret, jiff::Timestamp::now()))
    }
}

/// The user of a bootstrap-token secret presented as `id.secret` at `now`.
fn user_of(object: &Secret, id: &str, secret: &str, now: jiff::Timestamp) -> Option<UserInfo> {
    if object.type_.as_deref() != Some(SECRET_TYPE) || object.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let fields = fields(object);
    let field = |name: &str| fields.get(name).map(String::as_str);
    let matches = field("token-id") == Some(id)
        && field("token-secret").is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()))
        && field("usage-bootstrap-authentication") == Some("true");
    if !matches {
        return None;
    }
    if let Some(expiration) = field("expiration") {
        // An expiration that cannot be read counts as expired, as in Kubernetes.
        let expires: jiff::Timestamp = expiration.parse().ok()?;
        if expires <= now {
            return None;
        }
    }
    let mut groups = vec![BOOTSTRAPPERS_GROUP.to_string()];
    groups.extend(
        field("auth-extra-groups")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|g| g.starts_with("system:bootstrappers:"))
            .map(str::to_string),
    );
    Some(UserInfo {
        name: format!("system:bootstrap:{id}"),
        uid: String::new(),
        groups,
    })
}

/// `data` (decoded) with `stringData` over it.
fn fields(object: &Secret) -> BTreeMap<String, String> {
    let mut fields: BTreeMap<String, String> = object
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    fields.extend(object.string_data.clone().unwrap_or_default());
    fields
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fields: &[(&str, &str)]) -> Secret {
        let mut secret = Secret {
            type_: Some(SECRET_TYPE.into()),
            ..Default::default()
        };
        secret.string_data = Some(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        secret
    }

    #[test]
    fn tokens_have_kubeadms_shape() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(parse("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse("abcde.0123456789abcdef"), None);
        assert_eq!(parse("abcdef0123456789abcdef"), None);
    }

    #[test]
    fn valid_until_expiry_with_the_right_secret_and_usage() {
        let now: jiff::Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let good = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("expiration", "2026-12-01T12:00:00Z"),
            (
                "auth-extra-groups",
                "system:bootstrappers:gpu-nodes,system:masters",
            ),
        ];
        let user = user_of(&secret(&good), "abcdef", "0123456789abcdef", now).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        // Extra groups outside system:bootstrappers: are dropped (no escalation).
        assert_eq!(
            user.groups,
            ["system:bootstrappers", "system:bootstrappers:gpu-nodes"]
        );
        assert!(user_of(&secret(&good), "abcdef", "0123456789abcdeX", now).is_none());
        let later: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        assert!(user_of(&secret(&good), "abcdef", "0123456789abcdef", later).is_none());
        let mut unusable = good;
        unusable[2] = ("usage-bootstrap-authentication", "false");
        assert!(user_of(&secret(&unusable), "abcdef", "0123456789abcdef", now).is_none());
        let mut garbled = good;
        garbled[3] = ("expiration", "tomorrow");
        assert!(user_of(&secret(&garbled), "abcdef", "0123456789abcdef", now).is_none());
    }
}
