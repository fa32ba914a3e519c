//! CNI 1.0 client library.
//!
//! Not built yet: the networking issue fills it with network config lists,
//! plugin lookup and execution, result caching and version negotiation.
