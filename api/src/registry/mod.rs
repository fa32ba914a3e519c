//! The kind registry: every kind coxswain serves, with its REST and storage names.
//!
//! The API server uses it for discovery and URL routing, `cox get` for short names, and
//! the store for keys. Store keys are `/registry/<group>/<resource>/<namespace>/<name>`
//! for namespaced kinds and `/registry/<group>/<resource>/<name>` for cluster-scoped
//! ones, where the core group (whose `apiVersion` is plain `v1`) is written `core`.

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use thiserror::Error;

use crate::names::NameRule;

/// The group segment of store keys for the core group.
pub const CORE_GROUP_KEY: &str = "core";

/// Everything coxswain knows about one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group (`v1`).
    pub version: &'static str,
    /// `apiVersion` as written in objects (`apps/v1`, or `v1` for the core group).
    pub api_version: &'static str,
    /// The kind (`Pod`).
    pub kind: &'static str,
    /// The plural resource name used in URLs and store keys (`pods`).
    pub plural: &'static str,
    /// The singular resource name (`pod`).
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names (`po`).
    pub short_names: &'static [&'static str],
    /// The rule object names must follow.
    pub name_rule: NameRule,
}

/// Whether a `k8s_openapi` scope is namespaced.
pub trait ScopeKind {
    /// True for namespaced kinds.
    const NAMESPACED: bool;
}

impl ScopeKind for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl ScopeKind for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

impl KindInfo {
    /// The registry entry for `T`, its names taken from `T`'s `Resource` constants.
    pub const fn of<T: Resource>(
        singular: &'static str,
        short_names: &'static [&'static str],
        name_rule: NameRule,
    ) -> KindInfo
    where
        T::Scope: ScopeKind,
    {
        KindInfo {
            group: T::GROUP,
            version: T::VERSION,
            api_version: T::API_VERSION,
            kind: T::KIND,
            plural: T::URL_PATH_SEGMENT,
            singular,
            namespaced: <T::Scope as ScopeKind>::NAMESPACED,
            short_names,
            name_rule,
        }
    }

    /// The group as written in store keys (`core` for the core group).
    pub fn store_group(&self) -> &'static str {
        if self.group.is_empty() {
            CORE_GROUP_KEY
        } else {
            self.group
        }
    }

    /// The store key of an object of this kind; `namespace` must be given exactly for
    /// namespaced kinds.
    pub fn store_key(&self, namespace: Option<&str>, name: &str) -> Result<String, StoreKeyError> {
        if name.is_empty() || name.contains('/') {
            return Err(StoreKeyError::BadName(name.to_string()));
        }
        if self.namespaced && namespace.is_none() {
            return Err(StoreKeyError::NamespaceRequired(self.kind));
        }
        let prefix = self.store_prefix(namespace)?;
        Ok(format!("{prefix}{name}"))
    }

    /// The key prefix (ending in `/`) under which objects of this kind are stored: in one
    /// namespace when `namespace` is given, across all namespaces otherwise.
    pub fn store_prefix(&self, namespace: Option<&str>) -> Result<String, StoreKeyError> {
        let base = format!("/registry/{}/{}/", self.store_group(), self.plural);
        match (self.namespaced, namespace) {
            (_, Some(ns)) if ns.is_empty() || ns.contains('/') => {
                Err(StoreKeyError::BadNamespace(ns.to_string()))
            }
            (true, Some(ns)) => Ok(format!("{base}{ns}/")),
            (_, None) => Ok(base),
            (false, Some(_)) => Err(StoreKeyError::ClusterScoped(self.kind)),
        }
    }
}

/// Why a store key cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreKeyError {
    /// A namespaced kind's key needs its namespace.
    #[error("{0} is namespaced: a namespace is required")]
    NamespaceRequired(&'static str),
    /// A cluster-scoped kind was given a namespace.
    #[error("{0} is cluster-scoped: it has no namespace")]
    ClusterScoped(&'static str),
    /// The name is empty or contains `/`.
    #[error("object name {0:?} cannot be part of a store key")]
    BadName(String),
    /// No registered kind has this `apiVersion` and kind.
    #[error("unknown kind {kind:?} in {api_version:?}")]
    UnknownKind {
        /// The `apiVersion` asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
    },
    /// The namespace is empty or contains `/`.
    #[error("namespace {0:?} cannot be part of a store key")]
    BadNamespace(String),
}

/// Every kind coxswain serves (the list lives beside [`crate::Object`]).
pub static KINDS: &[KindInfo] = crate::object::ALL_KINDS;

/// The kind with this `apiVersion` and `kind`.
pub fn lookup(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

/// The kind served at `group` (empty or `core` for the core group) and plural `resource`.
pub fn by_resource(group: &str, resource: &str) -> Option<&'static KindInfo> {
    let group = if group == CORE_GROUP_KEY { "" } else { group };
    KINDS
        .iter()
        .find(|k| k.group == group && k.plural == resource)
}

/// The kind a user means by `name`, as kubectl resolves it: a plural, singular or short
/// name, or the kind itself, case-insensitively; `name.group` picks a group.
pub fn resolve(name: &str) -> Option<&'static KindInfo> {
    let name = name.to_ascii_lowercase();
    let (name, group) = match name.split_once('.') {
        Some((name, group)) => (name.to_string(), Some(group.to_string())),
        None => (name, None),
    };
    KINDS.iter().find(|k| {
        let matches_name = k.plural == name
            || k.singular == name
            || k.short_names.contains(&name.as_str())
            || k.kind.eq_ignore_ascii_case(&name);
        let matches_group = group.as_deref().is_none_or(|g| k.group == g);
        matches_name && matches_group
    })
}

/// The store key of object `name` of `kind` (looked up by `apiVersion` and kind).
pub fn store_key(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<String, StoreKeyError> {
    let info = lookup(api_version, kind).ok_or_else(|| StoreKeyError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    info.store_key(namespace, name)
}

#[cfg(test)]
mod tests;
