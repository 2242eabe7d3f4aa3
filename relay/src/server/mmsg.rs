//! Datagrams a burst at a time: on Linux one `recvmmsg(2)` reads up to
//! [`BATCH`] queued datagrams and one `sendmmsg(2)` sends what the core
//! queued for one socket, where a datagram each would take a system call
//! each. Elsewhere the same calls go one datagram at a time.
//!
//! Both go through tokio's readiness (`try_io`), so a socket that has
//! nothing more to read, or no room to send, is waited on as before.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams read or sent by one system call.
pub(super) const BATCH: usize = 32;

/// A datagram to send and where to.
pub(super) type Datagram = (SocketAddr, Vec<u8>);

/// Where a batch of datagrams is read into: one slot per datagram, each
/// `stride` bytes long.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    stride: usize,
    data: Vec<u8>,
    /// Each datagram's length (up to `stride`) and sender, for the first `count`.
    got: Vec<(usize, SocketAddr)>,
    count: usize,
    /// What the system call is handed besides.
    sys: sys::Headers,
}

impl Inbox {
    /// The datagrams the last [`receive`] read, in the order they arrived.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got[..self.count]
            .iter()
            .enumerate()
            .map(|(i, &(len, from))| (from, &self.data[i * self.stride..i * self.stride + len]))
    }

    /// How many datagrams the last [`receive`] read.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Makes room for [`BATCH`] datagrams of up to `stride` bytes; only
    /// grows, so the one inbox of a thread serves sockets of any size. The
    /// room is asked of the allocator zeroed, which leaves the pages to the
    /// kernel until a datagram is written into them: a batch of short
    /// datagrams touches a page per slot, not the whole 2 MiB.
    fn ready(&mut self, stride: usize) {
        self.count = 0;
        self.stride = stride;
        if self.data.len() < BATCH * stride {
            self.data = vec![0; BATCH * stride];
        }
        if self.got.len() < BATCH {
            let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
            self.got.resize(BATCH, (0, unspecified));
        }
    }
}

/// Reads what is queued on `socket`, up to [`BATCH`] datagrams of up to
/// `stride` bytes each (a longer one arrives cut to `stride`), into `inbox`.
/// Nothing queued is not an error: the inbox is then empty, and tokio waits
/// for the socket again.
///
/// A batch shorter than [`BATCH`] does not tell tokio the queue is empty,
/// though it was: the reader calls again and learns it from the kernel.
/// That call costs about a microsecond, and one message at a time is
/// relayed faster for it: the next one often arrives meanwhile, where
/// waiting at once would put the thread to sleep and wake it again
/// (measured: 100,000 messages one at a time cost 19% more CPU and 5 µs
/// more added latency at the median without that call).
pub(super) fn receive(socket: &UdpSocket, inbox: &mut Inbox, stride: usize) -> io::Result<()> {
    inbox.ready(stride);
    let result = socket.try_io(Interest::READABLE, || sys::receive(socket, inbox));
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

/// Sends each datagram from `socket` if the socket can take it now, as
/// many as it takes per system call. One the kernel refuses (an
/// unreachable address, say) is dropped and the rest still go; once the
/// socket's buffer is full the rest are dropped, as UDP may drop them
/// anyway: nothing waits. Returns how many were sent.
///
/// The kernel is asked directly, not through tokio's readiness: nothing
/// here waits for a socket to become writable, so that readiness would
/// only drop datagrams the kernel would take. A relayed socket bound a
/// moment ago is not yet known to tokio as writable until its reactor has
/// looked, which a busy reader may not let it do for many requests: its
/// first datagrams to the peer were dropped so (found under load, where a
/// client's Send right after its CreatePermission was lost).
pub(super) fn send(socket: &UdpSocket, datagrams: &[Datagram]) -> usize {
    let mut sent = 0;
    let mut next = 0;
    while next < datagrams.len() {
        match sys::send(socket, &datagrams[next..]) {
            Ok(n) => {
                sent += n;
                next += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tracing::trace!(
                    dropped = datagrams.len() - next,
                    "send buffer full: datagrams dropped"
                );
                break;
            }
            Err(e) => {
                tracing::trace!(to = %datagrams[next].0, error = %e, "datagram dropped");
                next += 1;
            }
        }
    }
    sent
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::mem;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use std::ptr;

    use socket2::SockAddr;
    use tokio::net::UdpSocket;

    use super::{BATCH, Datagram, Inbox};

    /// What `recvmmsg` is handed, kept from call to call: each header
    /// points at its own address storage and its own slot of the inbox.
    /// Set up once and pointed at the slots again only when they move, so
    /// a call that reads one datagram costs little more than `recvfrom`.
    pub(super) struct Headers {
        names: Box<[libc::sockaddr_storage; BATCH]>,
        iovecs: Box<[libc::iovec; BATCH]>,
        headers: Box<[libc::mmsghdr; BATCH]>,
        /// The slots the iovecs point at: where they start, and their stride.
        pointed: (*mut u8, usize),
    }

    impl Default for Headers {
        fn default() -> Headers {
            // SAFETY: all-zero is a valid value of these C structs.
            let mut h = unsafe {
                Headers {
                    names: Box::new(mem::zeroed()),
                    iovecs: Box::new(mem::zeroed()),
                    headers: Box::new(mem::zeroed()),
                    pointed: (ptr::null_mut(), 0),
                }
            };
            // The boxes never move, so neither do these pointers.
            for i in 0..BATCH {
                let header = &mut h.headers[i].msg_hdr;
                header.msg_name = ptr::from_mut(&mut h.names[i]).cast();
                header.msg_iov = ptr::from_mut(&mut h.iovecs[i]);
                header.msg_iovlen = 1;
            }
            h
        }
    }

    impl std::fmt::Debug for Headers {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Headers")
        }
    }

    /// One `recvmmsg` without waiting: fills `inbox`, or fails as the
    /// socket does (`WouldBlock` when nothing is queued).
    pub(super) fn receive(socket: &UdpSocket, inbox: &mut Inbox) -> io::Result<()> {
        let stride = inbox.stride;
        let base = inbox.data.as_mut_ptr();
        let h = &mut inbox.sys;
        if h.pointed != (base, stride) {
            for (i, iovec) in h.iovecs.iter_mut().enumerate() {
                // SAFETY: the inbox holds BATCH slots of `stride` bytes.
                iovec.iov_base = unsafe { base.add(i * stride) }.cast();
                iovec.iov_len = stride;
            }
            h.pointed = (base, stride);
        }
        for header in h.headers.iter_mut() {
            // The kernel writes back how long each address was.
            header.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at its own address storage and its
        // own slot of `inbox.data`, all of which outlive the call; the
        // kernel writes at most `msg_namelen` and `iov_len` bytes into them.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                h.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut count = 0;
        for i in 0..n as usize {
            let len = h.headers[i].msg_len as usize;
            // A sender that is neither IPv4 nor IPv6 cannot be a UDP peer; skipped.
            let Some(from) = socket_addr(&h.names[i]) else {
                continue;
            };
            if count != i {
                inbox
                    .data
                    .copy_within(i * stride..i * stride + len, count * stride);
            }
            inbox.got[count] = (len, from);
            count += 1;
        }
        inbox.count = count;
        Ok(())
    }

    /// The sender's address the kernel wrote, if it is IPv4 or IPv6.
    fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(name.ss_family) {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a `sockaddr_in`, which the storage holds.
                let a = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for `sockaddr_in6`.
                let a = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let port = u16::from_be(a.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// One `sendmmsg` without waiting, of as many of `datagrams` as fit in
    /// a batch: how many the kernel took, or the error of the first. A
    /// single datagram goes by `sendto`, which has less to set up.
    pub(super) fn send(socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
        if let [(to, bytes)] = datagrams {
            return socket2::SockRef::from(socket)
                .send_to(bytes, &SockAddr::from(*to))
                .map(|_| 1);
        }
        let datagrams = &datagrams[..datagrams.len().min(BATCH)];
        let names: Vec<SockAddr> = datagrams.iter().map(|(to, _)| SockAddr::from(*to)).collect();
        // SAFETY: all-zero is a valid value of these C structs.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for (i, (_, bytes)) in datagrams.iter().enumerate() {
            iovecs[i] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let header = &mut headers[i].msg_hdr;
            header.msg_name = names[i].as_ptr().cast_mut().cast();
            header.msg_namelen = names[i].len();
            header.msg_iov = ptr::from_mut(&mut iovecs[i]);
            header.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own address and datagram, all
        // of which outlive the call; sending only reads them.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                datagrams.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io::{self, ErrorKind};

    use tokio::net::UdpSocket;

    use super::{BATCH, Datagram, Inbox};

    /// Nothing beyond the inbox's slots.
    #[derive(Debug, Default)]
    pub(super) struct Headers;

    /// Reads datagrams one at a time until a batch or until none is left.
    pub(super) fn receive(socket: &UdpSocket, inbox: &mut Inbox) -> io::Result<()> {
        let stride = inbox.stride;
        while inbox.count < BATCH {
            let at = inbox.count * stride;
            match socket.try_recv_from(&mut inbox.data[at..at + stride]) {
                Ok((len, from)) => {
                    inbox.got[inbox.count] = (len, from);
                    inbox.count += 1;
                }
                Err(e) if inbox.count > 0 && e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends the first datagram: one per call.
    pub(super) fn send(socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
        let (to, bytes) = &datagrams[0];
        socket2::SockRef::from(socket)
            .send_to(bytes, &socket2::SockAddr::from(*to))
            .map(|_| 1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Waits until `socket` has something queued.
    async fn readable(socket: &UdpSocket) {
        tokio::time::timeout(Duration::from_secs(5), socket.readable())
            .await
            .expect("nothing arrived in 5 s")
            .unwrap();
    }

    #[tokio::test]
    async fn one_call_reads_every_queued_datagram_with_its_sender_and_length() {
        let server = socket().await;
        let to = server.local_addr().unwrap();
        let (a, b) = (socket().await, socket().await);
        for i in 0..10u8 {
            let from = if i % 2 == 0 { &a } else { &b };
            from.send_to(&vec![i; usize::from(i) + 1], to).await.unwrap();
        }
        // All ten are queued on loopback once the last is readable.
        let mut inbox = Inbox::default();
        readable(&server).await;
        receive(&server, &mut inbox, 100).unwrap();
        assert_eq!(inbox.len(), 10, "one call reads all that is queued");
        for (i, (from, bytes)) in inbox.datagrams().enumerate() {
            let sender = if i % 2 == 0 { &a } else { &b };
            assert_eq!(from, sender.local_addr().unwrap());
            assert_eq!(bytes, vec![i as u8; i + 1]);
        }
        // Nothing left: an empty inbox, not an error.
        receive(&server, &mut inbox, 100).unwrap();
        assert_eq!(inbox.len(), 0);
    }

    #[tokio::test]
    async fn a_batch_is_at_most_its_size_and_a_long_datagram_arrives_cut_but_too_long() {
        let server = socket().await;
        let to = server.local_addr().unwrap();
        let client = socket().await;
        for _ in 0..BATCH + 5 {
            client.send_to(&[7; 300], to).await.unwrap();
        }
        let mut inbox = Inbox::default();
        readable(&server).await;
        receive(&server, &mut inbox, 101).unwrap();
        assert_eq!(inbox.len(), BATCH);
        assert!(inbox.datagrams().all(|(_, bytes)| bytes.len() == 101));
        receive(&server, &mut inbox, 101).unwrap();
        assert_eq!(inbox.len(), 5, "the rest come in the next batch");
    }

    #[tokio::test]
    async fn one_send_reaches_several_addresses_and_skips_one_the_kernel_refuses() {
        let sender = socket().await;
        let (a, b) = (socket().await, socket().await);
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // An IPv6 destination on an IPv4 socket: refused, by itself.
        let refused = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 9));
        let datagrams = vec![
            (to_a, b"one".to_vec()),
            (to_b, b"two".to_vec()),
            (refused, b"lost".to_vec()),
            (to_a, b"three".to_vec()),
        ];
        // A socket just made sends at once, before tokio's reactor has
        // looked at it.
        assert_eq!(send(&sender, &datagrams), 3);
        let mut buf = [0; 16];
        for (socket, want) in [(&a, &b"one"[..]), (&b, b"two"), (&a, b"three")] {
            let (len, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..len], want);
            assert_eq!(from, sender.local_addr().unwrap());
        }
    }
}
