//! Simulated GPU device nodes made with the real `mknod`: NVIDIA numbering,
//! and opening them fails because no driver claims major 195. Needs root;
//! without it the test says why it skipped.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

mod common;

use common::is_root;
use coxswain_nvidia_plugin::backend::SimulatedBackend;
use coxswain_nvidia_plugin::device_nodes::Mknod;
use coxswain_nvidia_plugin::topology::Topology;

#[test]
fn simulated_nodes_have_nvidia_numbers() {
    if !is_root() {
        eprintln!("skipping simulated_nodes_have_nvidia_numbers: mknod needs root (CAP_MKNOD)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("simulated-dev");
    SimulatedBackend::create(Topology::DgxH100, &dev, &Mknod).unwrap();
    // Idempotent: a second start keeps the nodes.
    SimulatedBackend::create(Topology::DgxH100, &dev, &Mknod).unwrap();
    let nvidia_driver = std::path::Path::new("/proc/driver/nvidia").exists();
    for (name, minor) in (0..8)
        .map(|i| (format!("nvidia{i}"), i))
        .chain([("nvidiactl".to_string(), 255)])
    {
        let path = dev.join(&name);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_char_device(), "{name}");
        assert_eq!(meta.mode() & 0o777, 0o666, "{name}");
        let rdev = meta.rdev();
        assert_eq!(
            (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)),
            (195, minor),
            "{name}"
        );
        if !nvidia_driver {
            let err = std::fs::File::open(&path).unwrap_err();
            // ENXIO: no driver for major 195. EACCES where the temp dir's
            // filesystem is mounted nodev.
            assert!(
                matches!(err.raw_os_error(), Some(libc_enxio) if libc_enxio == 6 || libc_enxio == 13),
                "{name}: {err}"
            );
        }
    }
}
