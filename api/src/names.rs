//! Object and label name rules, with Kubernetes' own messages.
//!
//! Each check returns every message that applies (empty when the name is valid), like
//! `k8s.io/apimachinery/pkg/util/validation`.

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Longest label value and name part of a qualified name.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character \
    (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower \
    case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
    character (e.g. 'example.com', regex used for validation is \
    '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric \
    characters or '-', start with an alphabetic character, and end with an alphanumeric \
    character (e.g. 'my-name',  or 'abc-123', regex used for validation is \
    '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', \
    '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
    'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of \
    alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
    character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
    '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Which rule an object kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: most objects (pods, config maps, nodes).
    Dns1123Subdomain,
    /// DNS-1123 label: namespaces, and kinds whose names become host or pod names.
    Dns1123Label,
    /// DNS-1035 label (starts with a letter): services.
    Dns1035Label,
    /// A path segment: not `.` or `..`, no `/` or `%` (RBAC roles and bindings, whose
    /// names such as `system:node` carry colons).
    PathSegment,
}

impl NameRule {
    /// Every message describing why `name` breaks this rule.
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => dns1123_subdomain(name),
            NameRule::Dns1123Label => dns1123_label(name),
            NameRule::Dns1035Label => dns1035_label(name),
            NameRule::PathSegment => path_segment(name),
        }
    }
}

/// Messages for a name that cannot be a path segment (Kubernetes' `ValidatePathSegmentName`).
pub fn path_segment(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

fn max_len_message(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_label_shape(name: &str, first_ok: impl Fn(u8) -> bool) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            first_ok(first)
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        _ => false,
    }
}

/// Messages for a name that is not a DNS-1123 label (at most 63 characters).
pub fn dns1123_label(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_message(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_label_shape(name, |b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        errors.push(DNS1123_LABEL_MESSAGE.to_string());
    }
    errors
}

/// Messages for a name that is not a DNS-1035 label (starts with a letter).
pub fn dns1035_label(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_message(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_label_shape(name, |b| b.is_ascii_lowercase()) {
        errors.push(DNS1035_LABEL_MESSAGE.to_string());
    }
    errors
}

/// Messages for a name that is not a DNS-1123 subdomain (at most 253 characters).
pub fn dns1123_subdomain(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_message(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !name.split('.').all(|part| is_label_shape(part, alnum)) {
        errors.push(DNS1123_SUBDOMAIN_MESSAGE.to_string());
    }
    errors
}

fn is_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Messages for a key that is not a qualified name (`[prefix/]name`): label and
/// annotation keys, resource names.
pub fn qualified_name(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_string());
        } else {
            errors.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else {
        if name.len() > LABEL_VALUE_MAX_LENGTH {
            errors.push(format!(
                "name part {}",
                max_len_message(LABEL_VALUE_MAX_LENGTH)
            ));
        }
        if !is_name_part(name) {
            errors.push(QUALIFIED_NAME_MESSAGE.to_string());
        }
    }
    errors
}

/// Messages for a label value that is not valid (empty is valid).
pub fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_message(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !is_name_part(value) {
        errors.push(LABEL_VALUE_MESSAGE.to_string());
    }
    errors
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segment_names_allow_colons_but_not_slashes() {
        assert!(super::path_segment("system:node").is_empty());
        assert_eq!(super::path_segment("a/b"), ["may not contain '/'"]);
        assert_eq!(super::path_segment(".."), ["may not be '..'"]);
    }

    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "my-name", "123-abc", &"a".repeat(63)] {
            assert!(dns1123_label(ok).is_empty(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!dns1123_label(bad).is_empty(), "{bad}");
        }
        assert_eq!(dns1123_label(&"a".repeat(64)), vec![max_len_message(63)]);
        assert!(dns1035_label("abc-123").is_empty());
        assert!(!dns1035_label("1abc").is_empty());
    }

    #[test]
    fn subdomains() {
        for ok in [
            "example.com",
            "a",
            "a-b.c-d",
            "a.".repeat(126).trim_end_matches('.'),
        ] {
            assert!(dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.com", "a_b", &"a".repeat(254)] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert!(dns1123_subdomain("Bad")[0].contains("RFC 1123 subdomain"));
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "nvidia.com/gpu",
            "My_Key.1",
        ] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "-a",
            "Bad.Prefix/a",
            "a/b/c",
            &"a".repeat(64),
        ] {
            assert!(!qualified_name(bad).is_empty(), "{bad}");
        }
        assert!(label_value("").is_empty());
        assert!(label_value("My_Value-1.2").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(!label_value(&"x".repeat(64)).is_empty());
    }
}
