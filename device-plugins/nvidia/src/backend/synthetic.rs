//! Plausible telemetry for simulated GPUs: a slow, deterministic load curve
//! per GPU (its phase set by the GPU's index) from which utilization, memory,
//! temperature, power and SM clock follow, scaled to the model's real power
//! and clock range. A faulted GPU (an injected XID) sits idle.

use std::f64::consts::TAU;

use crate::gpu::{GpuInfo, GpuTelemetry};

/// Seconds of one period of the load curve.
const LOAD_PERIOD_SECS: f64 = 120.0;
/// Seconds of one period of the memory curve: jobs hold memory longer than
/// they keep the SMs busy.
const MEMORY_PERIOD_SECS: f64 = 600.0;

/// Power and SM clock range of a GPU model (board power limits and boost
/// clocks from NVIDIA's data sheets).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Profile {
    idle_watts: f64,
    max_watts: f64,
    idle_mhz: f64,
    max_mhz: f64,
}

fn profile(model: &str) -> Profile {
    let (idle_watts, max_watts, idle_mhz, max_mhz) = if model.contains("H100") {
        (70.0, 700.0, 345.0, 1980.0)
    } else if model.contains("A100") && model.contains("PCIe") {
        (40.0, 300.0, 210.0, 1410.0)
    } else if model.contains("A100") {
        (55.0, 400.0, 210.0, 1410.0)
    } else if model.contains("V100") {
        (40.0, 300.0, 135.0, 1530.0)
    } else if model.contains("L4") {
        (16.0, 72.0, 210.0, 2040.0)
    } else {
        (40.0, 300.0, 200.0, 1500.0)
    };
    Profile {
        idle_watts,
        max_watts,
        idle_mhz,
        max_mhz,
    }
}

/// A phase in [0, 1) spreading the GPUs' curves apart (golden-ratio steps).
fn phase(index: u32) -> f64 {
    (f64::from(index) * 0.618_033_988_75).fract()
}

/// The reading of simulated `gpu` at `secs` seconds after the simulator
/// started; `faulted`: an injected XID has not been recovered from.
pub fn reading(gpu: &GpuInfo, secs: f64, faulted: bool) -> GpuTelemetry {
    let p = profile(&gpu.model);
    let offset = phase(gpu.index);
    // 5 % to 95 %, never quite idle nor pegged, as a busy training node looks.
    let load = if faulted {
        0.0
    } else {
        0.5 + 0.45 * (TAU * (secs / LOAD_PERIOD_SECS + offset)).sin()
    };
    let held = if faulted {
        0.0
    } else {
        0.5 + 0.4 * (TAU * (secs / MEMORY_PERIOD_SECS + offset)).sin()
    };
    // The driver's own reservation: about 0.6 % of the framebuffer.
    let reserved = gpu.memory_bytes / 160;
    let used = reserved + ((gpu.memory_bytes - reserved) as f64 * held) as u64;
    let clock = if load > 0.0 {
        p.max_mhz * (0.85 + 0.15 * load)
    } else {
        p.idle_mhz
    };
    GpuTelemetry {
        utilization_percent: Some((load * 100.0).round() as u32),
        memory_used_bytes: Some(used),
        memory_free_bytes: Some(gpu.memory_bytes - used),
        temperature_celsius: Some((30.0 + 45.0 * load).round() as u32),
        // Milliwatt resolution, as NVML reports it.
        power_watts: Some(
            ((p.idle_watts + (p.max_watts - p.idle_watts) * load) * 1000.0).round() / 1000.0,
        ),
        sm_clock_mhz: Some(clock.round() as u32),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::topology::Topology;

    fn h100s() -> Vec<GpuInfo> {
        Topology::DgxH100.gpus(Path::new("/sim"))
    }

    #[test]
    fn readings_stay_within_the_models_range() {
        for topology in [Topology::DgxH100, Topology::Dgx1V100, Topology::Pcie4x] {
            for gpu in topology.gpus(Path::new("/sim")) {
                let p = profile(&gpu.model);
                for step in 0..240 {
                    let r = reading(&gpu, f64::from(step) * 2.5, false);
                    let util = r.utilization_percent.unwrap();
                    assert!((5..=95).contains(&util), "{util}");
                    let (used, free) = (r.memory_used_bytes.unwrap(), r.memory_free_bytes.unwrap());
                    assert_eq!(used + free, gpu.memory_bytes);
                    assert!(used > 0 && free > 0);
                    let watts = r.power_watts.unwrap();
                    assert!(watts > p.idle_watts && watts < p.max_watts, "{watts}");
                    let mhz = f64::from(r.sm_clock_mhz.unwrap());
                    assert!(mhz <= p.max_mhz && mhz >= 0.85 * p.max_mhz, "{mhz}");
                    assert!((30..=75).contains(&r.temperature_celsius.unwrap()));
                }
            }
        }
    }

    #[test]
    fn readings_are_deterministic_per_gpu_and_vary_over_time_and_between_gpus() {
        let gpus = h100s();
        assert_eq!(
            reading(&gpus[3], 42.0, false),
            reading(&gpus[3], 42.0, false)
        );
        assert_ne!(
            reading(&gpus[3], 42.0, false),
            reading(&gpus[3], 72.0, false)
        );
        let at_once: std::collections::BTreeSet<u32> = gpus
            .iter()
            .map(|g| reading(g, 10.0, false).utilization_percent.unwrap())
            .collect();
        assert!(at_once.len() > 4, "GPUs move together: {at_once:?}");
    }

    #[test]
    fn a_faulted_gpu_is_idle() {
        let gpu = &h100s()[0];
        let r = reading(gpu, 30.0, true);
        assert_eq!(r.utilization_percent, Some(0));
        assert_eq!(r.sm_clock_mhz, Some(345));
        assert_eq!(r.power_watts, Some(70.0));
        assert_eq!(
            r.memory_free_bytes.unwrap() + gpu.memory_bytes / 160,
            gpu.memory_bytes
        );
    }
}
