//! `opsctl inventory init --from-values FILE`: a first inventory drafted from
//! the advertised list a deployment already has (Wire's
//! `brig.turnStatic.v2`): one relay per host the list names, its URLs
//! grouped under it, commented out or not. What the list cannot say (the
//! command that rolls the file out, the relays' kind, how opsctl logs in,
//! which site each is in) is left as
//! `FILL-IN` with what goes there beside it; `inventory check` names every
//! one left and accepts the file once they are filled.

use crate::advertise::{ListError, Listing};
use crate::inventory::{PLACEHOLDER, ice_host};

/// A drafted inventory.
pub struct Draft {
    pub text: String,
    /// How many relays it names.
    pub relays: usize,
    /// How many values it leaves as [`PLACEHOLDER`].
    pub blanks: usize,
}

/// The values a draft leaves for the operator.
const BLANKS: usize = 4;

/// One relay of the draft: a host and its URLs in file order.
struct Host<'a> {
    host: &'a str,
    urls: Vec<(&'a str, bool)>,
}

/// The draft inventory for the list at `list` of the values file whose
/// text is `values`. `values_path` is how the inventory names that file
/// (relative to where the inventory is written).
///
/// # Errors
///
/// The list cannot be read (the error names its line), or holds an entry
/// that is not a TURN/STUN URL, or holds none.
pub fn draft(values: &str, values_path: &str, list: &str) -> Result<Draft, ListError> {
    let listing = Listing::parse(values, list)?;
    let mut hosts: Vec<Host<'_>> = Vec::new();
    for entry in listing.all() {
        let Some(host) = ice_host(&entry.url) else {
            return Err(ListError::at(
                entry.line as u64 + 1,
                format!("`{}` in `{list}` is not a TURN or STUN URL", entry.url),
                "each entry is `turn:host:port`, `turns:host:port?transport=tcp` or `stun:host:port`",
            ));
        };
        match hosts.iter_mut().find(|h| h.host == host) {
            Some(h) => h.urls.push((&entry.url, entry.commented)),
            None => hosts.push(Host {
                host,
                urls: vec![(&entry.url, entry.commented)],
            }),
        }
    }
    if hosts.is_empty() {
        return Err(ListError::at(
            1,
            format!("`{list}` lists no relay"),
            "point --list at the list clients are handed, e.g. brig.turnStatic.v2",
        ));
    }
    let mut out = format!(
        "# Drafted by `opsctl inventory init` from `{list}` in {values_path}:\n\
         # one relay per host that list names, with its URLs.\n\
         #\n\
         # Fill in every {PLACEHOLDER} (the comment beside each says what goes\n\
         # there), split the relays into their sites, then run\n\
         #   opsctl --inventory THIS-FILE inventory check\n\
         # inventory.example.yaml shows every field there is.\n\
         \n\
         advertise:\n\
         \x20 backend: values-file\n\
         \x20 file: {}\n\
         \x20 list: {list}\n\
         \x20 apply: {PLACEHOLDER}            # the command that rolls the edited file out, e.g.\n\
         \x20                           # helm upgrade wire-server wire/wire-server -f values.yaml\n\
         \x20 # then: [kubectl rollout status deployment/brig --timeout 300s]\n\
         \n\
         defaults:\n\
         \x20 ssh:\n\
         \x20   user: {PLACEHOLDER}            # the login opsctl uses on every relay\n\
         \x20   # identity_file: ~/.ssh/id_ed25519\n\
         \x20   # sudo: true                     # when that login is not root\n\
         \x20 relay:\n\
         \x20   kind: {PLACEHOLDER}            # restund | coturn | rtpengine | relayd\n\
         \n\
         sites:\n\
         \x20 - name: {PLACEHOLDER}            # the data centre these relays are in, e.g. dc1\n\
         \x20   relays:\n",
        quoted(values_path)
    );
    let mut names: Vec<String> = Vec::new();
    for h in &hosts {
        let name = unique(relay_name(h.host), &names);
        let all_out = h.urls.iter().all(|(_, commented)| *commented);
        out.push_str(&format!("      - name: {name}\n"));
        out.push_str(&format!(
            "        host: {}   # where opsctl reaches it over SSH, if not this name\n",
            quoted(h.host)
        ));
        if all_out {
            out.push_str(
                "        # every URL of it is commented out in the values file: not advertised now\n",
            );
        }
        out.push_str("        urls:\n");
        for (url, _) in &h.urls {
            out.push_str(&format!("          - {}\n", quoted(url)));
        }
        names.push(name);
    }
    Ok(Draft {
        text: out,
        relays: hosts.len(),
        blanks: BLANKS,
    })
}

/// A relay's name from its host: a host name's first label, an address
/// with its dots and colons as dashes.
fn relay_name(host: &str) -> String {
    let is_address = host.parse::<std::net::IpAddr>().is_ok();
    let name = if is_address {
        host.replace(['.', ':'], "-")
    } else {
        host.split('.').next().unwrap_or(host).to_owned()
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() { "relay".to_owned() } else { name }
}

/// `name`, or `name-2`, `name-3`... if it is taken.
fn unique(name: String, taken: &[String]) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|n| format!("{name}-{n}"))
        .find(|n| !taken.contains(n))
        .unwrap_or(name)
}

/// A YAML single-quoted scalar.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_named_from_their_first_label_or_address_and_kept_apart() {
        assert_eq!(relay_name("turn1.example.com"), "turn1");
        assert_eq!(relay_name("192.0.2.10"), "192-0-2-10");
        assert_eq!(relay_name("2001:db8::1"), "2001-db8--1");
        let taken = vec!["turn".to_owned(), "turn-2".to_owned()];
        assert_eq!(unique("turn".into(), &taken), "turn-3");
        assert_eq!(unique("other".into(), &taken), "other");
        assert_eq!(quoted("it's"), "'it''s'");
    }

    #[test]
    fn a_draft_groups_each_host_s_urls_and_counts_its_blanks() {
        let values = "brig:\n  turnStatic:\n    v2:\n      - turn:a.example.com:3478\n      # - turn:b.example.com:3478\n      - turns:a.example.com:5349?transport=tcp\n      - turn:[2001:db8::1]:3478\n";
        let d = draft(values, "values.yaml", "brig.turnStatic.v2").ok().unwrap();
        assert_eq!(d.relays, 3);
        let root = crate::yaml::parse(&d.text).unwrap();
        assert_eq!(crate::inventory::placeholders(&root).len(), d.blanks);
        assert!(d.text.contains(
            "      - name: a\n        host: 'a.example.com'   # where opsctl reaches it over SSH, if not this name\n        urls:\n          - 'turn:a.example.com:3478'\n          - 'turns:a.example.com:5349?transport=tcp'\n"
        ), "{}", d.text);
        assert!(d.text.contains("      - name: b\n        host: 'b.example.com'   # where opsctl reaches it over SSH, if not this name\n        # every URL of it is commented out"), "{}", d.text);
        assert!(
            d.text
                .contains("      - name: 2001-db8--1\n        host: '2001:db8::1'"),
            "{}",
            d.text
        );
    }

    #[test]
    fn a_list_with_no_relay_or_a_bad_entry_is_refused_with_its_line() {
        let empty = "brig:\n  turnStatic:\n    v2: []\n";
        let e = draft(empty, "v.yaml", "brig.turnStatic.v2").err().unwrap();
        assert!(e.message.contains("lists no relay"), "{}", e.message);
        let bad = "brig:\n  turnStatic:\n    v2:\n      - https://turn.example.com\n";
        let e = draft(bad, "v.yaml", "brig.turnStatic.v2").err().unwrap();
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("not a TURN or STUN URL"), "{}", e.message);
    }
}
