//! Reading and writing the children a workload owns: listing them fresh from the API,
//! building pods from a template, deleting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::de::DeserializeOwned;

use super::error::{ApiContext, is_not_found};
use super::{Error, selector};

/// The controller owner reference `owner`'s children carry (`controller` and
/// `blockOwnerDeletion` set).
pub(crate) fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `child`'s controller is the object with `uid`.
pub(crate) fn is_controlled_by<C: Resource>(child: &C, uid: &str) -> bool {
    child
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The objects of kind `C` in `namespace` matching `selector` whose controller is `owner_uid`,
/// read fresh from the API.
pub(crate) async fn list_owned<C>(
    client: &kube::Client,
    namespace: &str,
    selector: Option<&LabelSelector>,
    owner_uid: &str,
) -> Result<Vec<C>, Error>
where
    C: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<C> = Api::namespaced(client.clone(), namespace);
    let mut params = ListParams::default();
    if let Some(selector) = selector {
        let query = selector::to_query(selector);
        if !query.is_empty() {
            params = params.labels(&query);
        }
    }
    let list = api
        .list(&params)
        .await
        .ctx(|| format!("listing {} in namespace {namespace}", C::plural(&())))?;
    Ok(list
        .items
        .into_iter()
        .filter(|c| is_controlled_by(c, owner_uid))
        .collect())
}

/// A pod built from `template`, owned by `owner`, named `<generate_name><random>`, with
/// `extra_labels` added to the template's labels.
pub(crate) fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: String,
    owner: OwnerReference,
    extra_labels: &BTreeMap<String, String>,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.extend(extra_labels.clone());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Creates `pod`; returns the stored pod.
pub(crate) async fn create_pod(client: &kube::Client, pod: &Pod) -> Result<Pod, Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), pod)
        .await
        .ctx(|| {
            format!(
                "creating pod {namespace}/{}*",
                pod.metadata.generate_name.as_deref().unwrap_or_default()
            )
        })
}

/// Deletes an object; one already gone is not an error.
pub(crate) async fn delete<C>(
    client: &kube::Client,
    obj: &C,
    params: &DeleteParams,
) -> Result<(), Error>
where
    C: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = obj.meta().namespace.as_deref().unwrap_or("default");
    let name = obj.meta().name.as_deref().unwrap_or_default();
    match Api::<C>::namespaced(client.clone(), namespace)
        .delete(name, params)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).ctx(|| format!("deleting {} {namespace}/{name}", C::kind(&()))),
    }
}

/// Background propagation: the garbage collector removes the children afterwards.
pub(crate) fn background() -> DeleteParams {
    DeleteParams::background()
}

/// `obj` read again from the API (`None` once deleted).
///
/// Reconciles start from kube-runtime's cache, which may not yet hold the controller's own
/// last status write; a controller whose decisions depend on its own status (conditions,
/// start times, revisions) reads the object fresh instead of writing a stale status back.
pub(crate) async fn fresh<C>(client: &kube::Client, obj: &C) -> Result<Option<C>, Error>
where
    C: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = obj.meta().namespace.as_deref().unwrap_or("default");
    let name = obj.meta().name.as_deref().unwrap_or_default();
    Api::<C>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ctx(|| format!("reading {} {namespace}/{name}", C::kind(&())))
}
