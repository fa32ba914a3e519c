//! The placement simulator behind `cox sim`.
