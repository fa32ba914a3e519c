//! CSI v1 driver and client.
//!
//! Not built yet: the volumes issue fills it with a node-local CSI driver
//! (`cox-csi`) and the client the agent uses.
