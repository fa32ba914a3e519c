//! GPU health: which events make a GPU unhealthy ([`policy`]), the shared
//! per-device health table that `ListAndWatch` streams from ([`state`]), and
//! the loop that feeds it from the backend ([`monitor`]).

pub mod monitor;
pub mod policy;
pub mod state;

pub use monitor::HealthMonitor;
pub use policy::XidPolicy;
pub use state::HealthTable;
