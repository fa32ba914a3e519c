//! Device-plugin protocols: upstream `v1beta1` and coxswain's `v1alpha1`
//! extensions.

/// The Kubernetes device-plugin API `v1beta1` (package `v1beta1`).
#[allow(missing_docs, clippy::all)]
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");

    /// API version a plugin sends in `RegisterRequest.version`.
    pub const VERSION: &str = "v1beta1";
    /// Health value of a device that can be allocated.
    pub const HEALTHY: &str = "Healthy";
    /// Health value of a device that must not be allocated.
    pub const UNHEALTHY: &str = "Unhealthy";
    /// File name of the registration socket inside the plugin directory.
    pub const KUBELET_SOCKET: &str = "kubelet.sock";
    /// The directory a kubelet serves `kubelet.sock` in.
    pub const KUBELET_DEVICE_PLUGIN_PATH: &str = "/var/lib/kubelet/device-plugins/";
}

/// coxswain's device-plugin extensions (package
/// `coxswain.deviceplugin.v1alpha1`).
#[allow(missing_docs, clippy::all)]
pub mod v1alpha1 {
    tonic::include_proto!("coxswain.deviceplugin.v1alpha1");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1beta1::{ContainerAllocateResponse, RegisterRequest};

    #[test]
    fn wire_format_matches_the_upstream_field_numbers() {
        let req = RegisterRequest {
            version: "v1beta1".into(),
            endpoint: "a".into(),
            resource_name: "b".into(),
            options: None,
        };
        let mut expected = vec![0x0a, 7];
        expected.extend_from_slice(b"v1beta1");
        expected.extend_from_slice(&[0x12, 1, b'a', 0x1a, 1, b'b']);
        assert_eq!(req.encode_to_vec(), expected);
        let resp = ContainerAllocateResponse {
            envs: [("K".to_string(), "V".to_string())].into_iter().collect(),
            ..Default::default()
        };
        // map<string,string> envs = 1: an entry message with key 1, value 2.
        assert_eq!(
            resp.encode_to_vec(),
            [0x0a, 6, 0x0a, 1, b'K', 0x12, 1, b'V']
        );
    }
}
