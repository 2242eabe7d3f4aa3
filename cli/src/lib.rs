//! opsctl as a library: the binary is a thin `main` over these modules; the
//! integration tests reach the remote layer and the lab through it.

pub mod advertise;
pub mod args;
pub mod cert;
pub mod clearwater;
pub mod command;
pub mod commands;
pub mod config;
pub mod duration;
pub mod envfile;
pub mod error;
pub mod etcd;
pub mod executor;
pub mod files;
pub mod health;
pub mod inventory;
pub mod journal;
pub mod lab;
pub mod lock;
pub mod onboard;
pub mod plan;
pub mod playbook;
pub mod printer;
pub mod reader;
pub mod remote;
pub mod rtpengine;
pub mod served_cert;
pub mod shell;
pub mod stats;
pub mod suggest;
pub mod template;
pub mod yaml;
