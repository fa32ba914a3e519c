//! Compiles the vendored and coxswain `.proto` files with `protox` (no
//! `protoc` needed) and generates tonic clients and servers for them.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto",
    "coxswain/deviceplugin/v1alpha1/attributes.proto",
    "csi/v1/csi.proto",
    "coxswain/node/v1alpha1/node.proto",
    "k8s.io/kubelet/pkg/apis/podresources/v1/api.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let fds = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
