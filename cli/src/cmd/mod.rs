//! One module per `cox` subcommand.

pub mod agent;
pub mod api_client;
pub mod apply;
pub mod bench;
pub mod delete;
pub mod demo;
pub mod describe;
pub mod get;
pub mod go_duration;
pub mod image;
pub mod kubeconfig;
pub mod logs;
pub mod manifest;
pub mod reencrypt;
pub mod server;
pub mod server_tls;
pub mod sim;
pub mod sim_bench;
pub mod token;
pub mod top;
