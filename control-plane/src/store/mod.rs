//! The store: a `Store` trait with an embedded (redb) and an etcd backend.
