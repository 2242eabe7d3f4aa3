//! The client's protocol logic, without sockets: signing requests with
//! long-term credentials, reading challenges, and telling data from
//! responses.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::stun::{
    Attribute, Builder, ChannelData, Class, Datagram, ErrorCode, Key, Message, Method, TransactionId,
    classify, kind,
};

/// Long-term credentials and what the server said about them so far.
#[derive(Debug, Clone)]
pub(super) struct Auth {
    username: String,
    password: String,
    /// REALM and NONCE from the last challenge, and the key they make.
    session: Option<(String, String, Key)>,
}

impl Auth {
    pub(super) fn new(username: &str, password: &str) -> Auth {
        Auth {
            username: username.to_owned(),
            password: password.to_owned(),
            session: None,
        }
    }

    /// The key responses are checked with, once a realm is known.
    pub(super) fn key(&self) -> Option<&Key> {
        self.session.as_ref().map(|(_, _, key)| key)
    }

    /// Takes the realm and nonce of a 401 or 438; whether the request is
    /// worth sending again (it was unsigned, or only the nonce went stale).
    pub(super) fn challenged(&mut self, response: &Message, was_signed: bool) -> bool {
        let Some(nonce) = response.nonce() else {
            return false;
        };
        let code = response.error_code().map(|e| e.code);
        let realm = response
            .realm()
            .map(str::to_owned)
            .or_else(|| self.session.as_ref().map(|(r, _, _)| r.clone()));
        let Some(realm) = realm else {
            return false;
        };
        let retry = match code {
            Some(ErrorCode::UNAUTHORIZED) => !was_signed,
            Some(ErrorCode::STALE_NONCE) => true,
            _ => false,
        };
        if retry {
            let key = Key::long_term(&self.username, &realm, &self.password);
            self.session = Some((realm, nonce.to_owned(), key));
        }
        retry
    }
}

/// Builds a request; signed when `auth` has seen a challenge.
pub(super) fn request(
    method: Method,
    tid: TransactionId,
    attrs: &[Attribute],
    auth: Option<&Auth>,
) -> Result<(Vec<u8>, bool), crate::stun::Error> {
    let mut b = Builder::new(method, Class::Request, tid);
    for a in attrs {
        b.add(a)?;
    }
    let session = auth.and_then(|a| Some((a, a.session.as_ref()?)));
    let signed = session.is_some();
    if let Some((auth, (realm, nonce, key))) = session {
        b.add(&Attribute::Username(auth.username.clone()))?;
        b.add(&Attribute::Realm(realm.clone()))?;
        b.add(&Attribute::Nonce(nonce.clone()))?;
        b.message_integrity(key)?;
    }
    Ok((b.fingerprint()?, signed))
}

/// A Send indication.
pub(super) fn send_indication(
    tid: TransactionId,
    peer: SocketAddr,
    data: &[u8],
) -> Result<Vec<u8>, crate::stun::Error> {
    let mut b = Builder::new(Method::SEND, Class::Indication, tid);
    b.add(&Attribute::XorPeerAddress(peer))?;
    b.add(&Attribute::Data(data.to_vec()))?;
    Ok(b.finish())
}

/// Application data relayed from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The peer that sent it.
    pub peer: SocketAddr,
    /// The data.
    pub data: Vec<u8>,
    /// The channel it came over, or `None` for a Data indication.
    pub channel: Option<u16>,
}

/// What arrived from the server.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A response to some transaction.
    Response(Message),
    /// Relayed data.
    Data(Received),
    /// Anything else: dropped.
    Junk,
}

/// Sorts one datagram or frame from the server; `channels` maps bound
/// channel numbers to their peers.
pub(super) fn incoming(bytes: &[u8], channels: &HashMap<u16, SocketAddr>) -> Incoming {
    match classify(bytes) {
        Datagram::Stun => match Message::decode(bytes) {
            Ok(msg) if matches!(msg.class, Class::Success | Class::Error) => Incoming::Response(msg),
            Ok(msg) if msg.class == Class::Indication && msg.method == Method::DATA => {
                let peer = msg.xor_peer_addresses().first().copied();
                let data = msg.get(kind::DATA).and_then(|a| match a {
                    Attribute::Data(d) => Some(d.clone()),
                    _ => None,
                });
                match (peer, data) {
                    (Some(peer), Some(data)) => Incoming::Data(Received {
                        peer,
                        data,
                        channel: None,
                    }),
                    _ => Incoming::Junk,
                }
            }
            _ => Incoming::Junk,
        },
        Datagram::ChannelData => match ChannelData::decode(bytes) {
            Ok(cd) => match channels.get(&cd.channel) {
                Some(&peer) => Incoming::Data(Received {
                    peer,
                    data: cd.data.to_vec(),
                    channel: Some(cd.channel),
                }),
                None => Incoming::Junk,
            },
            Err(_) => Incoming::Junk,
        },
        Datagram::Other => Incoming::Junk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(code: u16, realm: Option<&str>, nonce: &str) -> Message {
        let mut b = Builder::new(Method::ALLOCATE, Class::Error, TransactionId([1; 12]));
        b.add(&Attribute::ErrorCode(ErrorCode::new(code, "x"))).unwrap();
        if let Some(realm) = realm {
            b.add(&Attribute::Realm(realm.into())).unwrap();
        }
        b.add(&Attribute::Nonce(nonce.into())).unwrap();
        Message::decode(&b.finish()).unwrap()
    }

    #[test]
    fn signs_after_a_challenge_and_retries_only_what_can_succeed() {
        let mut auth = Auth::new("alice", "pw");
        let (unsigned, signed) = request(Method::ALLOCATE, TransactionId([2; 12]), &[], Some(&auth)).unwrap();
        assert!(!signed && !Message::decode(&unsigned).unwrap().has_integrity());

        assert!(auth.challenged(&challenge(401, Some("r"), "n1"), false));
        let (bytes, signed) = request(Method::REFRESH, TransactionId([3; 12]), &[], Some(&auth)).unwrap();
        let msg = Message::decode(&bytes).unwrap();
        assert!(signed);
        assert_eq!(
            (msg.username(), msg.realm(), msg.nonce()),
            (Some("alice"), Some("r"), Some("n1"))
        );
        assert_eq!(msg.verify_integrity(&Key::long_term("alice", "r", "pw")), Ok(()));

        // A signed request refused with 401: the password is wrong, stop.
        assert!(!auth.challenged(&challenge(401, Some("r"), "n2"), true));
        // 438 keeps the realm when the server leaves it out.
        assert!(auth.challenged(&challenge(438, None, "n3"), true));
        let (bytes, _) = request(Method::REFRESH, TransactionId([4; 12]), &[], Some(&auth)).unwrap();
        assert_eq!(Message::decode(&bytes).unwrap().nonce(), Some("n3"));
        assert!(!auth.challenged(&challenge(486, Some("r"), "n4"), true));
    }

    #[test]
    fn sorts_what_arrives() {
        let peer: SocketAddr = "198.51.100.1:9".parse().unwrap();
        let channels = HashMap::from([(0x4000, peer)]);
        let cd = ChannelData {
            channel: 0x4000,
            data: b"hi",
        };
        let Incoming::Data(r) = incoming(&cd.encode(true).unwrap(), &channels) else {
            panic!()
        };
        assert_eq!(
            (r.peer, r.data.as_slice(), r.channel),
            (peer, &b"hi"[..], Some(0x4000))
        );
        let unbound = ChannelData {
            channel: 0x4001,
            data: b"hi",
        };
        assert!(matches!(
            incoming(&unbound.encode(false).unwrap(), &channels),
            Incoming::Junk
        ));

        let mut b = Builder::new(Method::DATA, Class::Indication, TransactionId([5; 12]));
        b.add(&Attribute::XorPeerAddress(peer)).unwrap();
        b.add(&Attribute::Data(b"yo".to_vec())).unwrap();
        let Incoming::Data(r) = incoming(&b.finish(), &channels) else {
            panic!()
        };
        assert_eq!((r.peer, r.channel), (peer, None));
        assert!(matches!(incoming(b"junk", &channels), Incoming::Junk));
        let send = send_indication(TransactionId([6; 12]), peer, b"x").unwrap();
        assert!(matches!(incoming(&send, &channels), Incoming::Junk));
    }
}
