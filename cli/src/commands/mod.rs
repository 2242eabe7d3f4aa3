//! One module per subcommand kind. The procedures (restart, reboot, renew-cert,
//! recover-quorum) differ only in their playbook and targets, which the config
//! already resolved, so they share [`procedure`].

pub mod docs;
pub mod inventory;
pub mod lab;
pub mod procedure;
pub mod runs;
pub mod status;
