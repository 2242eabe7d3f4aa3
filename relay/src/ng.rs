//! rtpengine's ng control protocol: a bencoded dictionary in a UDP datagram,
//! after a cookie and a space; the reply carries the same cookie. Calls are
//! made with `offer` (the caller's SDP) and `answer` (the callee's), and
//! ended with `delete`; every reply has a `result` (`ok`, or `error` with an
//! `error-reason`).
//!
//! [`Value`] is the bencode codec (pure); [`Client`] sends a command and
//! waits for its reply, for the lab and health checks.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why bytes are not one bencoded value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the value ends early, at byte {0}")]
    Truncated(usize),
    #[error("byte {0} cannot start a value")]
    Unexpected(usize),
    #[error("a number at byte {0} is not one")]
    BadNumber(usize),
    #[error("a dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    #[error("values nest deeper than {MAX_DEPTH} at byte {0}")]
    TooDeep(usize),
    #[error("{0} bytes follow the value")]
    Trailing(usize),
}

/// How deep lists and dictionaries may nest: ng messages are two or three deep.
pub const MAX_DEPTH: usize = 32;

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key`, for a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The text of a string value (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Appends the bencoding (dictionary keys sorted, as bencode requires).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Exactly one value, and nothing after it.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] naming the byte where the input stops being bencode.
    pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        let (v, used) = decode_at(input, 0, 0)?;
        if used != input.len() {
            return Err(DecodeError::Trailing(input.len() - used));
        }
        Ok(v)
    }
}

/// The value starting at `at`, and where it ends.
fn decode_at(input: &[u8], at: usize, depth: usize) -> Result<(Value, usize), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep(at));
    }
    match input.get(at) {
        None => Err(DecodeError::Truncated(at)),
        Some(b'i') => {
            let end = find(input, at + 1, b'e')?;
            let n = std::str::from_utf8(&input[at + 1..end])
                .ok()
                .filter(|s| !s.is_empty() && !s.starts_with('+'))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(DecodeError::BadNumber(at + 1))?;
            Ok((Value::Int(n), end + 1))
        }
        Some(b'l') => {
            let mut items = Vec::new();
            let mut pos = at + 1;
            loop {
                match input.get(pos) {
                    None => return Err(DecodeError::Truncated(pos)),
                    Some(b'e') => return Ok((Value::List(items), pos + 1)),
                    Some(_) => {
                        let (v, next) = decode_at(input, pos, depth + 1)?;
                        items.push(v);
                        pos = next;
                    }
                }
            }
        }
        Some(b'd') => {
            let mut items = BTreeMap::new();
            let mut pos = at + 1;
            loop {
                match input.get(pos) {
                    None => return Err(DecodeError::Truncated(pos)),
                    Some(b'e') => return Ok((Value::Dict(items), pos + 1)),
                    Some(c) if c.is_ascii_digit() => {
                        let (k, next) = decode_at(input, pos, depth + 1)?;
                        let Value::Bytes(k) = k else {
                            return Err(DecodeError::KeyNotString(pos));
                        };
                        let (v, next) = decode_at(input, next, depth + 1)?;
                        items.insert(k, v);
                        pos = next;
                    }
                    Some(_) => return Err(DecodeError::KeyNotString(pos)),
                }
            }
        }
        Some(c) if c.is_ascii_digit() => {
            let colon = find(input, at, b':')?;
            let len = std::str::from_utf8(&input[at..colon])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(DecodeError::BadNumber(at))?;
            let start = colon + 1;
            let end = start.checked_add(len).ok_or(DecodeError::BadNumber(at))?;
            if end > input.len() {
                return Err(DecodeError::Truncated(input.len()));
            }
            Ok((Value::Bytes(input[start..end].to_vec()), end))
        }
        Some(_) => Err(DecodeError::Unexpected(at)),
    }
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, DecodeError> {
    input[from.min(input.len())..]
        .iter()
        .position(|b| *b == byte)
        .map(|p| from + p)
        .ok_or(DecodeError::Truncated(input.len()))
}

/// Why an ng command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    #[error("cannot talk to rtpengine at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("rtpengine at {addr} did not answer within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("rtpengine at {addr} answered with something that is not an ng reply: {why}")]
    BadReply { addr: SocketAddr, why: String },
    #[error("rtpengine at {addr} refused `{command}`: {reason}")]
    Refused {
        addr: SocketAddr,
        command: String,
        reason: String,
    },
}

/// Sends ng commands to one rtpengine and waits for each reply.
pub struct Client {
    addr: SocketAddr,
    socket: UdpSocket,
    timeout: Duration,
    /// Starts every cookie of this client: rtpengine answers a cookie it
    /// has seen (from any client) with its cached reply, so no two clients,
    /// in this process or another, may share one.
    prefix: String,
    next: u64,
}

impl Client {
    /// A client of the rtpengine listening for ng on `addr`, from `bind`.
    ///
    /// # Errors
    ///
    /// [`NgError::Io`] when the local socket cannot be made.
    pub fn new(addr: SocketAddr, bind: SocketAddr, timeout: Duration) -> Result<Client, NgError> {
        let io = |source| NgError::Io { addr, source };
        let socket = UdpSocket::bind(bind).map_err(io)?;
        socket.set_read_timeout(Some(timeout)).map_err(io)?;
        let mut nonce = [0u8; 8];
        crate::random::fill(&mut nonce).map_err(io)?;
        Ok(Client {
            addr,
            socket,
            timeout,
            prefix: format!("opsctl-{:016x}", u64::from_le_bytes(nonce)),
            next: 1,
        })
    }

    /// Sends `command` with `args` and returns the reply's dictionary, once
    /// its `result` is `ok` (`pong` for a ping).
    ///
    /// # Errors
    ///
    /// [`NgError`]: no answer in time, a reply that is not bencode or lacks
    /// the cookie, or a result other than ok with rtpengine's reason.
    pub fn command(&mut self, command: &str, args: Vec<(&str, Value)>) -> Result<Value, NgError> {
        let addr = self.addr;
        let cookie = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        let mut msg = Value::dict(args);
        if let Value::Dict(d) = &mut msg {
            d.insert(b"command".to_vec(), Value::str(command));
        }
        let mut out = format!("{cookie} ").into_bytes();
        msg.encode(&mut out);
        self.socket
            .send_to(&out, addr)
            .map_err(|source| NgError::Io { addr, source })?;
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(NgError::Timeout {
                        addr,
                        after: self.timeout,
                    });
                }
                Err(source) => return Err(NgError::Io { addr, source }),
            };
            // A late reply to an earlier command is not this one's.
            let Some(body) = buf[..n].strip_prefix(format!("{cookie} ").as_bytes()) else {
                continue;
            };
            if from != addr {
                continue;
            }
            let reply = Value::decode(body).map_err(|e| NgError::BadReply {
                addr,
                why: e.to_string(),
            })?;
            let result = reply.get("result").and_then(Value::text).unwrap_or_default();
            if result == "ok" || result == "pong" {
                return Ok(reply);
            }
            return Err(NgError::Refused {
                addr,
                command: command.to_owned(),
                reason: reply
                    .get("error-reason")
                    .and_then(Value::text)
                    .unwrap_or_else(|| format!("result `{result}`")),
            });
        }
    }

    /// `offer`: the caller's SDP in, rtpengine's SDP (its own address and
    /// ports for the callee to send to) out.
    ///
    /// # Errors
    ///
    /// See [`Client::command`]; also a reply without `sdp`.
    pub fn offer(&mut self, call_id: &str, from_tag: &str, sdp: &str) -> Result<String, NgError> {
        let reply = self.command(
            "offer",
            vec![
                ("call-id", Value::str(call_id)),
                ("from-tag", Value::str(from_tag)),
                ("sdp", Value::str(sdp)),
            ],
        )?;
        self.sdp_of(&reply)
    }

    /// `answer`: the callee's SDP in, rtpengine's SDP for the caller out.
    ///
    /// # Errors
    ///
    /// See [`Client::offer`].
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Result<String, NgError> {
        let reply = self.command(
            "answer",
            vec![
                ("call-id", Value::str(call_id)),
                ("from-tag", Value::str(from_tag)),
                ("to-tag", Value::str(to_tag)),
                ("sdp", Value::str(sdp)),
            ],
        )?;
        self.sdp_of(&reply)
    }

    /// `delete`: ends the call at once (rtpengine otherwise keeps a
    /// deleted call for its `delete-delay`, 30 s by default).
    ///
    /// # Errors
    ///
    /// See [`Client::command`].
    pub fn delete(&mut self, call_id: &str) -> Result<(), NgError> {
        self.command(
            "delete",
            vec![("call-id", Value::str(call_id)), ("delete delay", Value::Int(0))],
        )
        .map(|_| ())
    }

    fn sdp_of(&self, reply: &Value) -> Result<String, NgError> {
        reply
            .get("sdp")
            .and_then(Value::text)
            .ok_or_else(|| NgError::BadReply {
                addr: self.addr,
                why: "no `sdp` in the reply".into(),
            })
    }
}

/// The address and port of an SDP's first audio stream (`c=` and `m=audio`).
pub fn sdp_audio(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(c) = line
            .strip_prefix("c=IN IP4 ")
            .or_else(|| line.strip_prefix("c=IN IP6 "))
        {
            ip = ip.or_else(|| c.split('/').next()?.parse::<std::net::IpAddr>().ok());
        }
        if let Some(m) = line.strip_prefix("m=audio ") {
            port = port.or_else(|| m.split(' ').next()?.parse::<u16>().ok());
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// A minimal SDP offering one PCMU audio stream from `at`.
pub fn audio_sdp(at: SocketAddr) -> String {
    let family = if at.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n",
        ip = at.ip(),
        port = at.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ng_reply_decodes_and_a_message_encodes_with_sorted_keys() {
        // The shape rtpengine answers an offer with.
        let reply = b"d3:sdp17:v=0\r\nc=IN IP4 1\r\n6:result2:oke";
        let v = Value::decode(reply).unwrap();
        assert_eq!(v.get("result").and_then(Value::text).as_deref(), Some("ok"));
        let msg = Value::dict([
            ("sdp", Value::str("x")),
            ("command", Value::str("offer")),
            ("n", Value::Int(-5)),
            ("l", Value::List(vec![Value::str("a"), Value::Int(0)])),
        ]);
        let mut out = Vec::new();
        msg.encode(&mut out);
        assert_eq!(out, b"d7:command5:offer1:ll1:ai0ee1:ni-5e3:sdp1:xe".to_vec());
        assert_eq!(Value::decode(&out).unwrap(), msg);
    }

    #[test]
    fn malformed_bencode_is_refused_where_it_goes_wrong() {
        for (input, err) in [
            (&b""[..], DecodeError::Truncated(0)),
            (b"i12", DecodeError::Truncated(3)),
            (b"ie", DecodeError::BadNumber(1)),
            (b"i+1e", DecodeError::BadNumber(1)),
            (b"5:abc", DecodeError::Truncated(5)),
            (b"d1:a", DecodeError::Truncated(4)),
            (b"di1e1:ae", DecodeError::KeyNotString(1)),
            (b"x", DecodeError::Unexpected(0)),
            (b"i1ei2e", DecodeError::Trailing(3)),
            (b"99999999999999999999999:a", DecodeError::BadNumber(0)),
        ] {
            assert_eq!(
                Value::decode(input),
                Err(err),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let deep = "l".repeat(MAX_DEPTH + 2) + &"e".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            Value::decode(deep.as_bytes()),
            Err(DecodeError::TooDeep(_))
        ));
    }

    #[test]
    fn the_audio_stream_of_an_answer_is_found() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.20.1\r\ns=-\r\nc=IN IP4 127.0.10.1\r\nt=0 0\r\nm=audio 31016 RTP/AVP 0\r\na=rtcp:31017\r\n";
        assert_eq!(sdp_audio(sdp), Some("127.0.10.1:31016".parse().unwrap()));
        let ours = audio_sdp("127.0.20.1:40000".parse().unwrap());
        assert_eq!(sdp_audio(&ours), Some("127.0.20.1:40000".parse().unwrap()));
        assert_eq!(sdp_audio("v=0\r\n"), None);
    }
}
