//! The workload controllers' error type.

/// Why a reconcile failed; the error policy retries with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API failed.
    #[error("{context}: {source}")]
    Api {
        /// What the controller was doing, naming the object.
        context: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object's spec cannot be acted on; names the field.
    #[error("{object}: {field}: {message}")]
    InvalidSpec {
        /// `namespace/name` of the object.
        object: String,
        /// The field at fault, e.g. `spec.schedule`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// Whether this is a 409 conflict (a lost race, retried at once by the next reconcile).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api { source, .. } if matches!(**source, kube::Error::Api(ref s) if s.code == 409))
    }
}

/// Adds a context to client errors.
pub(crate) trait ApiContext<T> {
    /// Wraps the error with `context`.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> ApiContext<T> for Result<T, kube::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Api {
            context: context(),
            source: Box::new(source),
        })
    }
}

/// Whether a client error is a 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Whether a client error is a 409 AlreadyExists or Conflict.
pub(crate) fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}
