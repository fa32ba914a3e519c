//! GPU health: which events make a GPU unhealthy ([`policy`]), the shared
//! per-device health table that `ListAndWatch` streams from ([`state`]), the
//! XIDs seen per GPU ([`xids`]), and the loop that feeds both from the
//! backend ([`monitor`]).

pub mod monitor;
pub mod policy;
pub mod state;
pub mod xids;

pub use monitor::HealthMonitor;
pub use policy::XidPolicy;
pub use state::HealthTable;
pub use xids::XidLog;
