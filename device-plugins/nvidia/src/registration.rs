//! Registering with the kubelet (or the coxswain agent) through the
//! `v1beta1.Registration` service on `<plugin-dir>/kubelet.sock`.

use std::path::Path;

use coxswain_proto::deviceplugin::v1beta1::{
    self as v1beta1, DevicePluginOptions, RegisterRequest, registration_client::RegistrationClient,
};

use crate::{Error, unix};

/// What the plugin tells the registration server about itself.
pub fn register_request(endpoint: &str, resource_name: &str) -> RegisterRequest {
    RegisterRequest {
        version: v1beta1::VERSION.to_string(),
        endpoint: endpoint.to_string(),
        resource_name: resource_name.to_string(),
        options: Some(DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }),
    }
}

/// Registers once: dials `kubelet_sock` and sends `Register`.
pub async fn register(
    kubelet_sock: &Path,
    endpoint: &str,
    resource_name: &str,
) -> Result<(), Error> {
    let channel = unix::connect(kubelet_sock).await?;
    RegistrationClient::new(channel)
        .register(register_request(endpoint, resource_name))
        .await
        .map_err(|status| Error::RegistrationRefused {
            path: kubelet_sock.to_path_buf(),
            status: Box::new(status),
        })?;
    Ok(())
}
