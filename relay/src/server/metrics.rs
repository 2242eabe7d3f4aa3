//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.x, one answer
//! per connection. Scrapers and `curl` need no more than that, so no HTTP
//! library is pulled in for it. A request must arrive whole within a few
//! seconds and fit in a few KiB; anything else is answered 404, 405 or 400
//! and the connection is closed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Ctx;

/// How long a scraper has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_REQUEST: usize = 8192;
/// Scrapes answered at once; more wait to be accepted.
const MAX_SCRAPES: usize = 16;

/// Accepts scrapes until shutdown.
pub(super) async fn listener(listener: TcpListener, local: SocketAddr, mut ctx: Ctx) {
    let scrapes = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    while let Some((stream, _, permit)) = super::tasks::accept(&listener, local, &scrapes, &mut ctx).await {
        let ctx = ctx.clone_for_task();
        tokio::spawn(async move {
            answer(stream, ctx).await;
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, mut ctx: Ctx) {
    let head = tokio::select! {
        h = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)) => h,
        _ = ctx.shutdown.recv() => return,
    };
    let (status, body) = match head {
        Ok(Some(head)) => match route(&head) {
            Ok(()) => ("200 OK", ctx.drive(|driver, _| driver.metrics())),
            Err(refusal) => refusal,
        },
        Ok(None) => (
            "400 Bad Request",
            "the request head is too long or cut short\n".to_owned(),
        ),
        Err(_) => return,
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request head, up to its blank line; `None` if it is longer than
/// [`MAX_REQUEST`] or the connection ends first.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Whether the request asks for the metrics; else the answer it gets.
fn route(head: &str) -> Result<(), (&'static str, String)> {
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Ok(()),
        (_, "/metrics") => Err(("405 Method Not Allowed", "only GET is answered\n".to_owned())),
        _ => Err(("404 Not Found", "relayd's metrics are at /metrics\n".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn only_a_get_of_the_metrics_path_is_answered() {
        assert!(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n").is_ok());
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n").unwrap_err().0,
            "405 Method Not Allowed"
        );
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n").unwrap_err().0, "404 Not Found");
        assert_eq!(route("").unwrap_err().0, "404 Not Found");
    }
}
