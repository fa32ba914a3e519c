//! The coxswain node agent.
//!
//! Not built yet: the node-agent issue fills it with pod workers, the OCI
//! runtime (runc/crun), pod sandboxes (network namespace + cgroup), and the
//! device, network and volume stages.
