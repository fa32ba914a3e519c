//! One module per `cox` subcommand.

pub mod bench;
pub mod sim;
