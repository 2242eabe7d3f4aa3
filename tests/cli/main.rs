//! Command-line tests: the opsctl binary run as a user runs it, against the
//! shipped inventory, values file and playbooks, and against broken inputs.

mod certs;
mod clearwater;
mod contract;
mod docker;
mod docs;
mod drain;
mod errors;
mod examples;
mod gates;
mod init;
#[path = "../lab/mod.rs"]
mod lab;
#[path = "lab.rs"]
mod lab_demo;
mod lock;
mod packages;
mod plans;
mod quorum;
mod reboot;
mod remote;
mod renew;
mod resume;
mod rtpengine;
mod run;
mod status;
mod util;
