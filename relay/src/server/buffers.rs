//! Socket buffers sized as a relay needs them. Every client's datagrams
//! arrive on the one listening socket: with the kernel's default receive
//! buffer (208 KiB on Linux) a burst from many clients at once overflows it
//! and the kernel drops what does not fit, before the relay reads anything.
//! coturn asks for 4 MiB; so does relayd, by default, for its listening
//! sockets, and 1 MiB for each relayed socket (one peer's stream each).
//!
//! A buffer is a ceiling, not memory taken up front: the kernel holds only
//! what is queued. It also caps what a process may ask for
//! (`net.core.rmem_max`, `wmem_max`); where it gives less than asked, that
//! is logged once with the cap and how to raise it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// What each kind of socket asks the kernel for, in bytes (0: the kernel's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffers {
    /// The TURN listening sockets: receive and send.
    pub listen: usize,
    /// Each relayed socket: receive and send.
    pub relayed: usize,
}

impl Default for Buffers {
    fn default() -> Buffers {
        Buffers {
            listen: 4 << 20,
            relayed: 1 << 20,
        }
    }
}

/// What the kernel gave one socket, as it reports it (Linux reports twice
/// the size granted: the other half is its own bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub asked: usize,
    pub receive: usize,
    pub send: usize,
}

impl Granted {
    /// Whether the kernel gave less than asked (Linux's reports doubled).
    #[must_use]
    pub fn capped(&self) -> bool {
        let doubled = cfg!(target_os = "linux");
        let usable = |reported: usize| if doubled { reported / 2 } else { reported };
        usable(self.receive) < self.asked || usable(self.send) < self.asked
    }
}

/// Asks for `bytes` of receive and send buffer on `socket`.
///
/// # Errors
///
/// The operating system's, if it refuses the setting outright.
pub fn size(socket: &impl AsFd, bytes: usize) -> io::Result<Granted> {
    let s = socket2::SockRef::from(socket);
    if bytes > 0 {
        s.set_recv_buffer_size(bytes)?;
        s.set_send_buffer_size(bytes)?;
    }
    Ok(Granted {
        asked: bytes,
        receive: s.recv_buffer_size()?,
        send: s.send_buffer_size()?,
    })
}

/// The kernel's ceilings, for the message that names them.
fn ceilings() -> String {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    };
    format!(
        "net.core.rmem_max is {}, net.core.wmem_max is {}",
        read("rmem_max"),
        read("wmem_max")
    )
}

fn kib(bytes: usize) -> String {
    format!("{} KiB", bytes / 1024)
}

/// Sizes a listening socket and logs what it got; a cap is a warning.
pub(super) fn size_listening(socket: &impl AsFd, bytes: usize, addr: SocketAddr) {
    match size(socket, bytes) {
        Ok(g) if g.capped() => tracing::warn!(
            %addr,
            asked = %kib(g.asked),
            receive = %kib(g.receive),
            send = %kib(g.send),
            "the kernel gave the listening socket less buffer than asked ({}): bursts beyond it are dropped before relayd reads them; raise them, e.g. `sysctl -w net.core.rmem_max={} net.core.wmem_max={}`",
            ceilings(),
            g.asked,
            g.asked
        ),
        Ok(g) => {
            tracing::info!(%addr, receive = %kib(g.receive), send = %kib(g.send), "listening socket buffers")
        }
        Err(e) => tracing::warn!(%addr, error = %e, "cannot size the listening socket's buffers"),
    }
}

/// Sizes a relayed socket; a cap is said once per process, not per allocation.
pub(super) fn size_relayed(socket: &impl AsFd, bytes: usize) {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let told = || TOLD.swap(true, Ordering::Relaxed);
    match size(socket, bytes) {
        Ok(g) if g.capped() && !told() => tracing::warn!(
            asked = %kib(g.asked),
            receive = %kib(g.receive),
            "the kernel gives relayed sockets less buffer than asked ({}); raise the ceilings or lower `buffers.relayed`",
            ceilings()
        ),
        Err(e) if !told() => tracing::warn!(error = %e, "cannot size relayed sockets' buffers"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_the_buffer_it_asks_for_within_the_kernel_s_ceiling() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = size(&socket, 0).unwrap();
        let g = size(&socket, 256 * 1024).unwrap();
        assert_eq!(g.asked, 256 * 1024);
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if cap >= 256 * 1024 {
            assert!(!g.capped(), "{g:?}");
            assert!(
                g.receive >= 256 * 1024 && g.receive > before.receive,
                "{before:?} {g:?}"
            );
        }
        // More than any ceiling allows is given as the ceiling, and said to be less.
        let huge = size(&socket, i32::MAX as usize).unwrap();
        assert!(huge.capped(), "{huge:?}");
    }
}
