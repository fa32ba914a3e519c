//! Integration tests of decoding, encoding and validating objects of every kind.

mod decode_errors;
mod examples;
mod fuzz;
mod roundtrip;
