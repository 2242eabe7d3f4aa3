//! Reading the inventory tree into layers and nodes, collecting every problem.

use std::path::PathBuf;

use relay::Kind;

use super::layers::{CertLayer, Defaults, Manager, RelayLayer, SshLayer, StatsLayer};
use super::model::{KnownHosts, OnTimeout, ReadOn, Redis, Rtpengine, SecretRef, Transport};
use crate::reader::{At, MapReader};

pub const KINDS: [(&str, Kind); 4] = [
    ("restund", Kind::Restund),
    ("coturn", Kind::Coturn),
    ("rtpengine", Kind::Rtpengine),
    ("relayd", Kind::Relayd),
];

pub const STATS_VIA: [&str; 4] = ["turnstats", "coturn-cli", "prometheus", "rtpengine-ctl"];

pub fn transport(at: &At) -> Option<Transport> {
    at.choice(&[("ssh", Transport::Ssh), ("local", Transport::Local)])
}

pub fn defaults(m: &mut MapReader) -> Defaults {
    let mut d = Defaults {
        transport: m.get("transport").and_then(|a| transport(&a)),
        ..Defaults::default()
    };
    if let Some(mut s) = m.get("ssh").and_then(|a| a.map()) {
        d.ssh = ssh(&mut s);
        s.finish();
    }
    if let Some(mut r) = m.get("relay").and_then(|a| a.map()) {
        d.relay = relay_settings(&mut r);
        r.finish();
    }
    d.min_healthy_relays = m
        .get("min_healthy_relays")
        .and_then(|a| a.int::<usize>("a count of relays"));
    d
}

pub fn ssh(m: &mut MapReader) -> SshLayer {
    if m.has("password") {
        m.key_error(
            "password",
            "a password cannot be written in the inventory",
            Some("opsctl logs in with a key: set `identity_file`, or load the key with `ssh-add`".into()),
        );
    }
    SshLayer {
        user: m.get("user").and_then(|a| a.word("user name")),
        port: m.get("port").and_then(|a| a.int::<u16>("a port number")),
        identity_file: m
            .get("identity_file")
            .and_then(|a| a.word("path"))
            .map(PathBuf::from),
        known_hosts: m.get("known_hosts").and_then(|a| {
            a.choice(&[
                ("strict", KnownHosts::Strict),
                ("accept-new", KnownHosts::AcceptNew),
            ])
        }),
        known_hosts_file: m
            .get("known_hosts_file")
            .and_then(|a| a.word("path"))
            .map(PathBuf::from),
        connect_timeout: m.get("connect_timeout").and_then(|a| a.duration()),
        command_timeout: m.get("command_timeout").and_then(|a| a.duration()),
        jump_host: m.get("jump_host").and_then(|a| a.jump_host()),
        sudo: m.get("sudo").and_then(|a| a.bool()),
    }
}

/// The relay settings a node, a site's defaults or the global defaults may hold.
pub fn relay_settings(m: &mut MapReader) -> RelayLayer {
    let mut r = RelayLayer {
        kind: m.get("kind").map(|a| a.choice(&KINDS)),
        stun_check: m.get("stun_check").and_then(|a| a.bool()),
        stats: m.get("stats").and_then(|a| stats(&a)),
        ..RelayLayer::default()
    };
    if let Some(svc) = m.get("service") {
        service(&svc, &mut r);
    }
    if let Some(c) = m.get("cert") {
        r.cert = cert(&c).map(|layer| (layer, c.pos()));
    }
    if let Some(mut d) = m.get("drain").and_then(|a| a.map()) {
        r.drain_timeout = d.get("timeout").and_then(|a| a.duration());
        r.drain_poll = d.get("poll").and_then(|a| a.duration());
        r.drain_threshold = d
            .get("threshold")
            .and_then(|a| a.int::<u64>("a number of allocations"));
        r.drain_stuck_after = d.get("stuck_after").and_then(|a| a.duration());
        r.drain_on_timeout = d
            .get("on_timeout")
            .and_then(|a| a.choice(&[("stop", OnTimeout::Stop), ("readvertise", OnTimeout::Readvertise)]));
        r.relay_drain = d.get("relay_drain").and_then(|a| a.bool());
        d.finish();
    }
    if let Some(mut b) = m.get("reboot").and_then(|a| a.map()) {
        r.reboot_command = b.get("command").and_then(|a| a.argv());
        r.boot_id = b.get("boot_id").and_then(|a| a.argv());
        r.reboot_timeout = b.get("timeout").and_then(|a| a.duration());
        b.finish();
    }
    r
}

fn stats(at: &At) -> Option<StatsLayer> {
    let mut m = at.map()?;
    let via = m.get("via").and_then(|a| {
        let named: Vec<(&'static str, &'static str)> = STATS_VIA.iter().map(|v| (*v, *v)).collect();
        a.choice(&named).map(str::to_owned)
    });
    let layer = StatsLayer {
        pos: at.pos(),
        via,
        addr: m.get("addr").and_then(|a| a.name()),
        url: m.get("url").and_then(|a| a.name()),
        command: m.get("command").and_then(|a| a.argv()),
        password: secret(&mut m, "password_env", "password_file"),
        read_on: m
            .get("read_on")
            .and_then(|a| a.choice(&[("node", ReadOn::Node), ("local", ReadOn::Local)])),
    };
    let mut layer = layer;
    if m.has("password") {
        // Counted as set, so the CLI does not also report a missing password.
        layer.password = Some(SecretRef::Env(String::new()));
        m.key_error(
            "password",
            "a password cannot be written in the inventory",
            Some("use `password_env: VAR` (an environment variable) or `password_file: PATH`".into()),
        );
    }
    m.finish();
    Some(layer)
}

/// A secret by reference: the inventory names where it is, never what it is.
pub fn secret(m: &mut MapReader, env_key: &'static str, file_key: &'static str) -> Option<SecretRef> {
    let env = m.get(env_key).and_then(|a| a.name()).map(SecretRef::Env);
    let file = m
        .get(file_key)
        .and_then(|a| a.name())
        .map(|p| SecretRef::File(PathBuf::from(p)));
    if env.is_some() && file.is_some() {
        m.at.error(
            format!("both `{env_key}` and `{file_key}` are set"),
            Some("keep one of them".into()),
        );
    }
    env.or(file)
}

/// A relay's `rtpengine:` block.
pub fn rtpengine(at: &At) -> Option<Rtpengine> {
    let mut m = at.map()?;
    let cli = match m.get("cli") {
        Some(a) => host_port(&a)?,
        None => Rtpengine::default().cli,
    };
    let ng = match m.get("ng") {
        Some(a) => {
            let (h, p) = host_port(&a)?;
            Some(format!("{}:{p}", bracket_v6(&h)))
        }
        None => None,
    };
    let redis = match m.get("redis") {
        Some(a) => {
            let text = a.name()?;
            let Some((addr, db)) = text.rsplit_once('/') else {
                a.error(
                    format!("`{text}` names no database"),
                    Some(
                        "write it as rtpengine's `redis=` does: `HOST:PORT/DB`, e.g. `10.0.0.10:6379/1`"
                            .into(),
                    ),
                );
                return None;
            };
            let Ok(db) = db.parse::<u32>() else {
                a.error(
                    format!("`{db}` is not a Redis database number"),
                    Some("write `HOST:PORT/DB`, e.g. `10.0.0.10:6379/1`".into()),
                );
                return None;
            };
            if addr
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                a.error(
                    format!("`{addr}` is not host:port"),
                    Some("write `HOST:PORT/DB`, e.g. `10.0.0.10:6379/1`".into()),
                );
                return None;
            }
            Some(Redis {
                addr: addr.to_owned(),
                db,
            })
        }
        None => None,
    };
    let subscribe = match m.get("subscribe") {
        Some(a) => {
            let mut out = Vec::new();
            for item in a.list()? {
                out.push(item.int::<u32>("a Redis database number")?);
            }
            if let Some(r) = &redis
                && out.contains(&r.db)
            {
                a.error(
                    format!("it subscribes to its own database {}", r.db),
                    Some("list the databases of its peers only: it writes its own calls to its own".into()),
                );
            }
            out
        }
        None => Vec::new(),
    };
    let interfaces = match m.get("interfaces") {
        Some(a) => {
            let mut out = Vec::new();
            for item in a.list()? {
                let text = item.name()?;
                match text.split_once('/') {
                    Some((n, addr)) if !n.is_empty() && !addr.is_empty() => {
                        out.push((n.to_owned(), addr.to_owned()))
                    }
                    _ => {
                        item.error(
                            format!("`{text}` is not `NAME/ADDRESS`"),
                            Some("write each as rtpengine's `interface=` does, e.g. `pub1/10.0.0.1`".into()),
                        );
                        return None;
                    }
                }
            }
            out
        }
        None => Vec::new(),
    };
    if m.has("redis_password") {
        m.key_error(
            "redis_password",
            "a password cannot be written in the inventory",
            Some("use `redis_password_env: VAR` (rtpengine itself reads `RTPENGINE_REDIS_AUTH_PW`) or `redis_password_file: PATH`".into()),
        );
    }
    let redis_password = secret(&mut m, "redis_password_env", "redis_password_file");
    if redis_password.is_some() && redis.is_none() {
        m.at.error(
            "a Redis password but no `redis`",
            Some("set `redis: HOST:PORT/DB`, or remove the password".into()),
        );
    }
    m.finish();
    Some(Rtpengine {
        cli,
        ng,
        redis,
        subscribe,
        interfaces,
        redis_password,
    })
}

/// An IPv6 address in brackets, as it is written before a port.
pub(super) fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn host_port(a: &At) -> Option<(String, u16)> {
    let text = a.name()?;
    let parsed = text
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty());
    if parsed.is_none() {
        a.error(
            format!("`{text}` is not host:port"),
            Some("e.g. `10.0.0.1:9900`, or `[2001:db8::1]:9900`".into()),
        );
    }
    parsed
}

fn service(at: &At, r: &mut RelayLayer) {
    let Some(mut m) = at.map() else { return };
    let unit = m.get("unit").and_then(|a| a.word("unit name"));
    let container = m.get("container").and_then(|a| a.word("container name"));
    r.manager = match (unit, container) {
        (Some(_), Some(_)) => {
            m.at.error(
                "both `unit` and `container` are set",
                Some("a relay runs under systemd (`unit`) or docker (`container`), not both".into()),
            );
            None
        }
        (Some(u), None) => Some((Manager::Systemd(u), at.pos())),
        (None, Some(c)) => Some((Manager::Docker(c), at.pos())),
        (None, None) => None,
    };
    r.stop = m.get("stop").and_then(|a| a.argv());
    r.start = m.get("start").and_then(|a| a.argv());
    r.restart = m.get("restart").and_then(|a| a.argv());
    r.status = m.get("status").and_then(|a| a.argv());
    r.status_expect = m.get("status_expect").and_then(|a| a.scalar_text());
    r.reload = m.get("reload").and_then(|a| a.argv());
    m.finish();
}

fn cert(at: &At) -> Option<CertLayer> {
    let mut m = at.map()?;
    let layer = CertLayer {
        bundle: m.get("bundle").and_then(|a| a.word("path")),
        cert: m.get("cert").and_then(|a| a.word("path")),
        key: m.get("key").and_then(|a| a.word("path")),
    };
    match (&layer.bundle, &layer.cert, &layer.key) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        (Some(_), _, _) => m.at.error(
            "`bundle` cannot be combined with `cert`/`key`",
            Some("use `bundle` (chain + key in one file) or `cert` and `key` (two files)".into()),
        ),
        (None, Some(_), None) | (None, None, Some(_)) => m.at.error(
            "`cert` and `key` go together",
            Some("name both files, or use `bundle` for a single chain + key file".into()),
        ),
        (None, None, None) => m.at.error(
            "no certificate file named",
            Some("set `bundle: PATH`, or `cert: PATH` and `key: PATH`".into()),
        ),
    }
    m.finish();
    Some(layer)
}

/// A list of commands: each item a string or an argument list.
pub fn commands(at: &At) -> Option<Vec<Vec<String>>> {
    match &at.node.value {
        crate::yaml::Value::Seq(_) => {
            let items = at.list()?;
            items.iter().map(|i| i.argv()).collect()
        }
        _ => at.argv().map(|c| vec![c]),
    }
}

/// A non-empty list of non-empty strings.
pub fn strings(at: &At) -> Option<Vec<String>> {
    at.strings()
}
