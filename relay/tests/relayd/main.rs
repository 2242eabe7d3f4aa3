//! relayd end to end: an in-process server on loopback sockets, driven by
//! `relay::client` and plain UDP peers, its status port read with the same
//! parsers opsctl uses.

mod binary;
mod certs;
mod client_coturn;
mod coturn;
mod harness;
mod pem;
mod relaying;
mod status;
mod tls;
mod turn;
mod turnutils;
