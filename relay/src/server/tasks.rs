//! Reader tasks: each waits on one socket (or accepts connections) and
//! hands what arrives to the core, until the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use super::Ctx;
use super::driver::Driver;
use super::mmsg::{self, BATCH, Inbox};
use crate::stun::frame_len;
use crate::turn::{FiveTuple, Transport};

/// Frames queued for one TCP client before more are dropped.
const WRITE_QUEUE: usize = 256;
/// Longest status command datagram read; restund reads 32 bytes of it.
const STATUS_DATAGRAM: usize = 2048;

thread_local! {
    /// What every datagram socket on this thread reads into.
    static INBOX: std::cell::RefCell<Inbox> = std::cell::RefCell::new(Inbox::default());
}

/// How long a TLS client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads TURN datagrams from clients.
pub(super) async fn udp_listener(socket: Arc<UdpSocket>, local: SocketAddr, max_packet: usize, ctx: Ctx) {
    datagrams(&socket, max_packet, ctx, |driver, now, from, bytes| {
        let tuple = FiveTuple {
            client: from,
            server: local,
            transport: Transport::Udp,
        };
        driver.core.handle_client(now, tuple, bytes);
    })
    .await;
}

/// Reads datagrams from peers to one relayed socket.
async fn relay_listener(socket: Arc<UdpSocket>, relayed: SocketAddr, max_packet: usize, ctx: Ctx) {
    datagrams(&socket, max_packet, ctx, |driver, now, peer, bytes| {
        driver.core.handle_peer(now, relayed, peer, bytes);
    })
    .await;
}

/// Starts [`relay_listener`] as a task of its own.
pub(super) fn spawn_relay(
    socket: Arc<UdpSocket>,
    relayed: SocketAddr,
    max_packet: usize,
    ctx: Ctx,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(relay_listener(socket, relayed, max_packet, ctx))
}

/// Reads status commands.
pub(super) async fn status_listener(socket: Arc<UdpSocket>, ctx: Ctx) {
    datagrams(&socket, STATUS_DATAGRAM, ctx, |driver, now, from, bytes| {
        driver.status(now, from, bytes);
    })
    .await;
}

/// Hands each datagram to the core until shutdown, a batch at a time: what
/// one system call reads goes to the core under one take of its lock, and
/// what the core sends in reply goes out a socket at a time
/// ([`mmsg`]). Datagrams are read into the thread's one inbox rather than
/// one per socket: a relay holds a socket per allocation, and a buffer each
/// (a batch of 64 KiB slots) would cost far more than the allocation
/// itself. Each slot is one byte longer than `max` so that a longer
/// datagram arrives truncated but still too long, and the core counts it
/// as oversized.
async fn datagrams(
    socket: &UdpSocket,
    max: usize,
    mut ctx: Ctx,
    handle: impl Fn(&mut Driver, Instant, SocketAddr, &[u8]),
) {
    let mut since_turn = 0;
    loop {
        let ready = tokio::select! {
            r = socket.readable() => r,
            _ = ctx.shutdown.recv() => return,
        };
        if let Err(e) = ready {
            tracing::warn!(error = %e, "socket no longer readable");
            return;
        }
        // What is queued now, one batch. A socket that has handed the core
        // a batch's worth of datagrams since its last turn lets the other
        // tasks run before it reads again, however short its batches.
        let read = INBOX.with_borrow_mut(|inbox| {
            if let Err(e) = mmsg::receive(socket, inbox, max + 1) {
                // ICMP errors surface here on some systems; the socket still works.
                tracing::debug!(error = %e, "receive failed");
                return 0;
            }
            if inbox.len() > 0 {
                ctx.drive(|driver, now| {
                    for (from, bytes) in inbox.datagrams() {
                        handle(driver, now, from, bytes);
                    }
                });
            }
            inbox.len()
        });
        since_turn += read;
        if since_turn >= BATCH {
            since_turn = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// The next connection `listener` accepts once `permits` has room for it,
/// with its permit; `None` at shutdown. A failed accept (out of file
/// descriptors, typically) is logged and retried after a pause instead of
/// spinning.
pub(super) async fn accept(
    listener: &TcpListener,
    local: SocketAddr,
    permits: &Arc<Semaphore>,
    ctx: &mut Ctx,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.ok()?,
            _ = ctx.shutdown.recv() => return None,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.shutdown.recv() => return None,
        };
        match accepted {
            Ok((stream, peer)) => return Some((stream, peer, permit)),
            Err(e) => {
                tracing::warn!(%local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts TURN connections, at most as many at once as `connections`
/// allows; over TLS when given an acceptor.
pub(super) async fn tcp_listener(
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    max_packet: usize,
    mut ctx: Ctx,
) {
    while let Some((stream, client, permit)) = accept(&listener, local, &connections, &mut ctx).await {
        let _ = stream.set_nodelay(true);
        let transport = if tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        let tuple = FiveTuple {
            client,
            server: local,
            transport,
        };
        let ctx = ctx.clone_for_task();
        match &tls {
            None => tokio::spawn(connection(stream, tuple, max_packet, permit, ctx)),
            Some(tls) => {
                let handshake = tls.accept(stream);
                tokio::spawn(tls_connection(handshake, tuple, max_packet, permit, ctx))
            }
        };
    }
}

/// A TLS connection: the handshake (bounded in time, abandoned on
/// shutdown), then TURN as over TCP.
async fn tls_connection(
    handshake: tokio_rustls::Accept<TcpStream>,
    tuple: FiveTuple,
    max_packet: usize,
    permit: OwnedSemaphorePermit,
    mut ctx: Ctx,
) {
    let done = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => done,
        _ = ctx.shutdown.recv() => return,
    };
    match done {
        Ok(Ok(stream)) => connection(stream, tuple, max_packet, permit, ctx).await,
        Ok(Err(e)) => tracing::debug!(%tuple, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%tuple, "TLS handshake timed out"),
    }
}

/// One TURN connection: frames in, frames out, until either side closes,
/// the framing is lost, or shutdown.
async fn connection(
    stream: impl AsyncRead + AsyncWrite + Send + 'static,
    tuple: FiveTuple,
    max_packet: usize,
    _permit: OwnedSemaphorePermit,
    mut ctx: Ctx,
) {
    let (writer, mut frames) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    ctx.drive(|driver, _| driver.tcp.insert(tuple, writer));
    tracing::debug!(%tuple, "connection opened");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0; 16 * 1024];
    'conn: loop {
        tokio::select! {
            read = rd.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frame_len(&buf) {
                        Ok(Some(len)) if len <= buf.len() => {
                            ctx.drive(|driver, now| driver.core.handle_client(now, tuple, &buf[..len]));
                            buf.drain(..len);
                        }
                        Ok(_) => break,
                        Err(_) => {
                            // Framing is lost: hand the core what came (it
                            // counts it as malformed) and hang up.
                            buf.truncate(max_packet);
                            ctx.drive(|driver, now| driver.core.handle_client(now, tuple, &buf));
                            break 'conn;
                        }
                    }
                }
            }
            out = frames.recv() => match out {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = ctx.shutdown.recv() => break,
        }
    }
    let _ = wr.shutdown().await;
    tracing::debug!(%tuple, "connection closed");
    ctx.drive(|driver, _| {
        driver.tcp.remove(&tuple);
        driver.core.connection_closed(tuple);
    });
}
