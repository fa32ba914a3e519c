//! An async face for [`Cni`]: plugin execution blocks, so every operation runs
//! on tokio's blocking pool and never on a worker thread other tasks share.

use std::sync::Arc;

use crate::attachment::Attachment;
use crate::conflist::NetworkConfigList;
use crate::error::{Error, Result};
use crate::network::{AddOutcome, Cni};

/// A cheaply clonable async wrapper around a [`Cni`] client.
#[derive(Clone)]
pub struct AsyncCni {
    inner: Arc<Cni>,
}

impl AsyncCni {
    /// Wraps a client.
    pub fn new(cni: Cni) -> Self {
        AsyncCni {
            inner: Arc::new(cni),
        }
    }

    /// The blocking client, for callers already off the async runtime.
    pub fn blocking(&self) -> &Cni {
        &self.inner
    }

    /// [`Cni::add`] on the blocking pool.
    pub async fn add(&self, net: NetworkConfigList, attachment: Attachment) -> Result<AddOutcome> {
        self.run(move |cni| cni.add(&net, &attachment)).await
    }

    /// [`Cni::del`] on the blocking pool.
    pub async fn del(&self, net: NetworkConfigList, attachment: Attachment) -> Result<()> {
        self.run(move |cni| cni.del(&net, &attachment)).await
    }

    /// [`Cni::check`] on the blocking pool.
    pub async fn check(&self, net: NetworkConfigList, attachment: Attachment) -> Result<()> {
        self.run(move |cni| cni.check(&net, &attachment)).await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Cni) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let cni = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&cni))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}
