//! The `v1beta1.Registration` service the manager serves on `kubelet.sock`: checks a
//! plugin's request (API version, resource name, endpoint) and hands it to the
//! manager, which refuses a second live plugin for the same resource.

use std::sync::Arc;

use coxswain_proto::deviceplugin::v1beta1::registration_server::Registration;
use coxswain_proto::deviceplugin::v1beta1::{self as v1beta1, Empty, RegisterRequest};
use tonic::{Request, Response, Status};

use super::manager::Shared;

/// Serves `Register`.
pub(super) struct RegistrationService {
    pub shared: Arc<Shared>,
}

fn valid_name_part(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks a registration request; the error says which field is wrong and why.
pub(super) fn validate(req: &RegisterRequest) -> Result<(), Status> {
    if req.version != v1beta1::VERSION {
        return Err(Status::invalid_argument(format!(
            "version {:?}: unsupported device plugin API version; this agent supports {:?}",
            req.version,
            v1beta1::VERSION
        )));
    }
    let bad_name = || {
        Status::invalid_argument(format!(
            "resource_name {:?}: must be an extended resource name vendor.domain/type \
             (e.g. nvidia.com/gpu) outside kubernetes.io",
            req.resource_name
        ))
    };
    let (domain, kind) = req.resource_name.split_once('/').ok_or_else(bad_name)?;
    let domain_ok = domain.contains('.')
        && valid_name_part(domain, &['.'])
        && !domain.chars().any(|c| c.is_ascii_uppercase())
        && domain != "kubernetes.io"
        && !domain.ends_with(".kubernetes.io");
    if !domain_ok || !valid_name_part(kind, &['.', '_']) {
        return Err(bad_name());
    }
    let endpoint_ok = !req.endpoint.is_empty()
        && !req.endpoint.contains('/')
        && req.endpoint != "."
        && req.endpoint != ".."
        && req.endpoint != v1beta1::KUBELET_SOCKET;
    if !endpoint_ok {
        return Err(Status::invalid_argument(format!(
            "endpoint {:?}: must be the file name of the plugin's socket in the plugin directory",
            req.endpoint
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        if let Err(status) = validate(&req) {
            tracing::warn!(resource = %req.resource_name, error = %status.message(), "device plugin registration refused");
            return Err(status);
        }
        self.shared.register(&req)?;
        tracing::info!(resource = %req.resource_name, endpoint = %req.endpoint, "device plugin registered");
        Ok(Response::new(Empty {}))
    }
}
