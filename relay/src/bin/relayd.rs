//! relayd: a STUN/TURN relay with a restund-compatible status port.

fn main() -> std::process::ExitCode {
    relay::daemon::main()
}
