//! What every namespace holds for its pods' identities, as two kube-controller-manager
//! controllers keep it: the `default` ServiceAccount (the service-account controller) and
//! the `kube-root-ca.crt` ConfigMap with the cluster CA under `ca.crt` (the root-CA
//! publisher). Both are made when a namespace appears and made again when deleted; the
//! ConfigMap is put back when its CA is changed. The ConfigMap is written first, so by the
//! time ServiceAccount admission finds the `default` account, the CA its token volume
//! projects is there too.

use std::collections::BTreeMap;

use coxswain_api::k8s::{ConfigMap, Namespace, ServiceAccount};
use futures::{Stream, StreamExt};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::apiserver::service_account::{DEFAULT_ACCOUNT, ROOT_CA_CONFIG_MAP};

/// Keeps the `default` account and the CA ConfigMap (`ca_pem`) in every namespace until
/// `shutdown`.
pub async fn run(client: kube::Client, ca_pem: String, shutdown: CancellationToken) {
    let namespaces = namespaces_of(
        Api::<Namespace>::all(client.clone()),
        |ns: &Namespace| ns.metadata.name.clone(),
        true,
    );
    let accounts = namespaces_of(
        Api::<ServiceAccount>::all(client.clone()),
        |sa: &ServiceAccount| {
            (sa.metadata.name.as_deref() == Some(DEFAULT_ACCOUNT))
                .then(|| sa.metadata.namespace.clone())
                .flatten()
        },
        false,
    );
    let maps = namespaces_of(
        Api::<ConfigMap>::all(client.clone()),
        |map: &ConfigMap| {
            (map.metadata.name.as_deref() == Some(ROOT_CA_CONFIG_MAP))
                .then(|| map.metadata.namespace.clone())
                .flatten()
        },
        false,
    );
    let mut touched = futures::stream::select_all([namespaces, accounts, maps]);
    loop {
        let namespace = tokio::select! {
            next = touched.next() => match next {
                Some(namespace) => namespace,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        if let Err(e) = ensure(&client, &namespace, &ca_pem).await {
            tracing::debug!(namespace, "service accounts: {e}");
        }
    }
}

/// The namespaces whose objects of one kind were applied or deleted (`name_of` picks the
/// objects that matter and says their namespace); `applied_only` leaves deletions out.
fn namespaces_of<K>(
    api: Api<K>,
    name_of: impl Fn(&K) -> Option<String> + Send + 'static,
    applied_only: bool,
) -> std::pin::Pin<Box<dyn Stream<Item = String> + Send>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .flat_map(move |event| {
            let objects = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => vec![o],
                Ok(watcher::Event::Delete(o)) if !applied_only => vec![o],
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::debug!("service accounts: watching: {e}");
                    Vec::new()
                }
            };
            futures::stream::iter(objects.iter().filter_map(&name_of).collect::<Vec<_>>())
        })
        .boxed()
}

/// Makes the CA ConfigMap right and the default account present in `namespace`.
async fn ensure(client: &kube::Client, namespace: &str, ca_pem: &str) -> Result<(), kube::Error> {
    let live: Api<Namespace> = Api::all(client.clone());
    let Some(ns) = live.get_opt(namespace).await? else {
        return Ok(());
    };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let data = BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())]);
    match maps.get_opt(ROOT_CA_CONFIG_MAP).await? {
        Some(map) if map.data.as_ref() == Some(&data) => {}
        Some(mut map) => {
            map.data = Some(data);
            maps.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &map)
                .await?;
        }
        None => {
            let mut map = ConfigMap {
                data: Some(data),
                ..ConfigMap::default()
            };
            map.metadata.name = Some(ROOT_CA_CONFIG_MAP.to_string());
            create_once(&maps, &map).await?;
        }
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if accounts.get_opt(DEFAULT_ACCOUNT).await?.is_none() {
        let mut account = ServiceAccount::default();
        account.metadata.name = Some(DEFAULT_ACCOUNT.to_string());
        create_once(&accounts, &account).await?;
    }
    Ok(())
}

/// Creates `object`; one that another writer created first is fine.
async fn create_once<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
