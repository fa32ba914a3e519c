//! A node's GPU inventory (`gpu.coxswain.dev` ResourceSlices, see `coxswain_api::devices`)
//! → the scheduler's [`GpuDevice`]s. The model's device ID is the slice's `uuid`
//! attribute, the ID the agent hands to the device plugin's `Allocate`.

use coxswain_api::devices;

use super::super::model::GpuDevice;

/// The model's devices for `gpus`, ordered by their index on the node.
pub fn model_gpus(gpus: &[devices::GpuDevice]) -> Vec<GpuDevice> {
    let mut sorted: Vec<&devices::GpuDevice> = gpus.iter().collect();
    sorted.sort_by_key(|g| g.index);
    sorted
        .into_iter()
        .map(|g| GpuDevice {
            id: g.uuid.clone(),
            model: g.model.clone(),
            memory_mib: g.memory_bytes >> 20,
            numa: u8::try_from(g.numa_node).unwrap_or(u8::MAX),
            island: u16::try_from(g.nvlink_island).unwrap_or(u16::MAX),
            healthy: true,
            used_milli: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_becomes_the_device_id_in_index_order() {
        let gpu = |index: u32| devices::GpuDevice {
            uuid: format!("GPU-{index}"),
            index,
            model: "H100".into(),
            memory_bytes: 80 << 30,
            numa_node: index / 4,
            nvlink_island: index / 4 + 10,
            ..Default::default()
        };
        let model = model_gpus(&[gpu(5), gpu(0)]);
        assert_eq!(model[0].id, "GPU-0");
        assert_eq!(model[1].id, "GPU-5");
        assert_eq!(model[1].island, 11);
        assert_eq!(model[1].numa, 1);
        assert_eq!(model[1].memory_mib, 80 << 10);
        assert!(model[0].is_idle());
    }
}
