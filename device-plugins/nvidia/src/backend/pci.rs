//! PCI facts NVML does not give: the NUMA node and the PCIe root complex of a
//! GPU, read from sysfs by its PCI bus ID.

use std::path::Path;

/// Normalises an NVML bus ID (`00000000:1B:00.0`) to sysfs form
/// (`0000:1b:00.0`).
pub fn normalize_bus_id(bus_id: &str) -> String {
    let lower = bus_id.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

/// The NUMA node of a PCI device, `None` when sysfs says -1 or nothing.
pub fn numa_node(sysfs_pci_devices: &Path, bus_id: &str) -> Option<i64> {
    let text = std::fs::read_to_string(sysfs_pci_devices.join(bus_id).join("numa_node")).ok()?;
    text.trim().parse::<i64>().ok().filter(|n| *n >= 0)
}

/// The PCIe root complex (`pci0000:17`) a device hangs off, from the sysfs
/// link target; empty when unknown.
pub fn pcie_root(sysfs_pci_devices: &Path, bus_id: &str) -> String {
    std::fs::read_link(sysfs_pci_devices.join(bus_id))
        .ok()
        .and_then(|target| {
            target
                .components()
                .filter_map(|c| c.as_os_str().to_str())
                .find(|c| c.starts_with("pci"))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_are_normalised() {
        assert_eq!(normalize_bus_id("00000000:1B:00.0"), "0000:1b:00.0");
        assert_eq!(normalize_bus_id("0000:1b:00.0"), "0000:1b:00.0");
    }

    #[test]
    fn numa_and_root_come_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir
            .path()
            .join("devices/pci0000:17/0000:17:01.0/0000:1b:00.0");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("numa_node"), "1\n").unwrap();
        let bus = dir.path().join("bus");
        std::fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink(&real, bus.join("0000:1b:00.0")).unwrap();
        assert_eq!(numa_node(&bus, "0000:1b:00.0"), Some(1));
        assert_eq!(pcie_root(&bus, "0000:1b:00.0"), "pci0000:17");
        std::fs::write(real.join("numa_node"), "-1\n").unwrap();
        assert_eq!(numa_node(&bus, "0000:1b:00.0"), None);
        assert_eq!(pcie_root(&bus, "0000:99:00.0"), "");
    }
}
