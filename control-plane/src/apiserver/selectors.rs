//! Label selectors (equality- and set-based) and field selectors, parsed from the query.

use std::collections::BTreeSet;

use serde_json::Value;

use super::status_error::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`; every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

impl LabelSelector {
    /// Parses `app=web,tier!=db,env in (prod,qa),!canary,release`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let bad =
            |why: String| ApiError::BadRequest(format!("invalid labelSelector {text:?}: {why}"));
        let mut requirements = Vec::new();
        for term in split_terms(text).map_err(&bad)? {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = term.strip_prefix('!') {
                LabelRequirement::DoesNotExist(check_key(key.trim()).map_err(&bad)?)
            } else if let Some((key, values)) = split_set(term, " notin ") {
                LabelRequirement::NotIn(
                    check_key(key).map_err(&bad)?,
                    parse_set(values).map_err(&bad)?,
                )
            } else if let Some((key, values)) = split_set(term, " in ") {
                LabelRequirement::In(
                    check_key(key).map_err(&bad)?,
                    parse_set(values).map_err(&bad)?,
                )
            } else if let Some((key, value)) = term.split_once("!=") {
                LabelRequirement::NotEquals(
                    check_key(key).map_err(&bad)?,
                    check_value(value).map_err(&bad)?,
                )
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                LabelRequirement::Equals(
                    check_key(key).map_err(&bad)?,
                    check_value(value).map_err(&bad)?,
                )
            } else {
                LabelRequirement::Exists(check_key(term).map_err(&bad)?)
            };
            requirements.push(requirement);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether the object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::In(k, set) => label(k).is_some_and(|v| set.contains(v)),
            LabelRequirement::NotIn(k, set) => label(k).is_none_or(|v| !set.contains(v)),
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".to_string());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".to_string());
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn split_set<'a>(term: &'a str, operator: &str) -> Option<(&'a str, &'a str)> {
    let (key, rest) = term.split_once(operator)?;
    Some((key.trim(), rest.trim()))
}

fn parse_set(text: &str) -> Result<BTreeSet<String>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("set {text:?} must be written (a,b)"))?;
    inner.split(',').map(check_value).collect()
}

fn check_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let problems = coxswain_api::names::qualified_name(key);
    if key.is_empty() || !problems.is_empty() {
        return Err(format!("label key {key:?}: {}", problems.join("; ")));
    }
    Ok(key.to_string())
}

fn check_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let problems = coxswain_api::names::label_value(value);
    if !problems.is_empty() {
        return Err(format!("label value {value:?}: {}", problems.join("; ")));
    }
    Ok(value.to_string())
}

/// A parsed `fieldSelector`: `field=value` / `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Field paths a field selector may use; `involvedObject.*` and `metadata.*` match any subfield.
const FIELD_PREFIXES: &[&str] = &["metadata.", "involvedObject.", "regarding."];
const FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.schedulerName",
    "spec.restartPolicy",
    "spec.unschedulable",
    "status.phase",
    "status.podIP",
    "status.successful",
    "type",
    "reason",
    "source",
];

impl FieldSelector {
    /// Parses `metadata.name=web,spec.nodeName!=`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, negate, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, false, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid fieldSelector {text:?}: {term:?} must be field=value or field!=value"
                )));
            };
            let field = field.trim();
            if !FIELDS.contains(&field) && !FIELD_PREFIXES.iter().any(|p| field.starts_with(p)) {
                return Err(ApiError::BadRequest(format!(
                    "invalid fieldSelector {text:?}: field label not supported: {field}"
                )));
            }
            terms.push((field.to_string(), negate, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether the object satisfies every term (a missing field reads as empty).
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, negate, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) != *negate
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Parses `labelSelector` and `fieldSelector` from the query.
    pub fn from_query(query: &super::request::Query) -> Result<Self, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?,
        })
    }

    /// Whether `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// Whether every object is selected (no requirements at all).
    pub fn is_empty(&self) -> bool {
        self.labels.0.is_empty() && self.fields.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let pod = json!({"metadata": {"labels": {"app": "web", "env": "prod"}}});
        for (selector, expected) in [
            ("app=web", true),
            ("app==web,env=prod", true),
            ("app!=web", false),
            ("env in (prod,qa)", true),
            ("env notin (prod)", false),
            ("tier notin (db)", true),
            ("app", true),
            ("!app", false),
            ("!tier", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(selector).unwrap().matches(&pod),
                expected,
                "{selector}"
            );
        }
        for bad in [
            "app in prod",
            "a b=c",
            "env in (prod",
            "=x",
            "app=bad value",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors_read_paths() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Running"}});
        let matches = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(matches("metadata.name=p,status.phase=Running"));
        assert!(matches("spec.nodeName="));
        assert!(!matches("spec.nodeName!="));
        assert!(FieldSelector::parse("spec.bogus=x").is_err());
    }
}
