//! Choosing and handing out GPUs: [`preferred`] answers
//! `GetPreferredAllocation`, [`response`] builds what `Allocate` returns, and
//! [`cdi`] finds CDI names for GPUs where a CDI spec exists.

pub mod cdi;
pub mod preferred;
pub mod response;

pub use cdi::CdiIndex;
pub use preferred::preferred_allocation;
pub use response::AllocationContext;
