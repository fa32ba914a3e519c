//! The placement simulator behind `cox sim`.
//!
//! - [`openb`]: trace replay of the openb GPU-cluster traces, reproducing the
//!   FGD paper's simulator (policies, metric and reference checks).

pub mod openb;
