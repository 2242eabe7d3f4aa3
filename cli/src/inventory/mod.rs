//! The inventory: one YAML file describing a deployment's relays, config
//! clusters, how relays are advertised, and how opsctl reaches every node.
//!
//! Loading reads the whole file, merges defaults (global -> site -> node -> the
//! relay kind's own), and validates everything before any command runs. Every
//! problem is reported at once, each with file, line, field and a fix.

mod layers;
pub mod model;
mod read;
mod resolve;

use std::path::{Path, PathBuf};

pub use model::*;
pub use resolve::{DEFAULT_LIST, ice_host};

/// The value `opsctl inventory init` leaves where only the operator knows
/// what to write; an inventory holding one is refused until it is filled.
pub const PLACEHOLDER: &str = "FILL-IN";

use crate::reader::{At, Diags, InputError};
use crate::suggest;
use crate::yaml;

/// Reads and validates an inventory file.
pub fn load(path: &Path) -> anyhow::Result<Inventory> {
    let started = std::time::Instant::now();
    let text = crate::reader::read_text(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; pass `--inventory FILE`, set OPSCTL_INVENTORY, or start from inventory.example.yaml"
        } else {
            ""
        };
        crate::error::usage(format!("cannot read inventory {}: {e}{hint}", path.display()))
    })?;
    let inv = parse(&text, path)?;
    tracing::debug!(
        file = %path.display(),
        sites = inv.sites.len(),
        relays = inv.relays().count(),
        members = inv.members().count(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "inventory loaded"
    );
    Ok(inv)
}

/// Validates inventory text; `path` names it in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Inventory, InputError> {
    let file = path.display().to_string();
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let diags = Diags::new(&file);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diags.report(e.pos.unwrap_or_default(), "", e.message, None);
            return Err(diags.finish(()).unwrap_err());
        }
    };
    // A draft from `inventory init` with blanks left: those first, alone.
    let blanks = placeholders(&root);
    if !blanks.is_empty() {
        for (pos, field) in blanks {
            diags.report(
                pos,
                &field,
                format!("is still {PLACEHOLDER}: `opsctl inventory init` left it for you"),
                Some("write the value the comment beside it asks for".into()),
            );
        }
        return Err(diags.finish(()).unwrap_err());
    }
    let inventory = resolve::inventory(&At::root(&root, &diags), file, dir);
    diags.finish(())?;
    Ok(inventory.expect("an inventory that read without problems resolves"))
}

/// Every value still [`PLACEHOLDER`] in an inventory: where, and its field.
pub fn placeholders(root: &yaml::Node) -> Vec<(yaml::Pos, String)> {
    fn walk(node: &yaml::Node, path: &str, out: &mut Vec<(yaml::Pos, String)>) {
        match &node.value {
            yaml::Value::Str(s) if s == PLACEHOLDER => out.push((node.pos, path.to_owned())),
            yaml::Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), out);
                }
            }
            yaml::Value::Map(entries) => {
                for (k, v) in entries {
                    let path = if path.is_empty() {
                        k.name.clone()
                    } else {
                        format!("{path}.{}", k.name)
                    };
                    walk(v, &path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

/// A node of any kind, found by name.
pub enum NodeRef<'a> {
    Relay,
    Member { site: &'a Site },
}

impl Inventory {
    pub fn relays(&self) -> impl Iterator<Item = &Relay> {
        self.sites.iter().flat_map(|s| s.relays.iter())
    }

    pub fn members(&self) -> impl Iterator<Item = (&Site, &Member)> {
        self.sites.iter().flat_map(|s| {
            s.cluster
                .iter()
                .flat_map(move |c| c.members.iter().map(move |m| (s, m)))
        })
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn node(&self, name: &str) -> Option<NodeRef<'_>> {
        if self.relays().any(|r| r.name == name) {
            return Some(NodeRef::Relay);
        }
        self.members()
            .find(|(_, m)| m.name == name)
            .map(|(site, _)| NodeRef::Member { site })
    }

    /// Every node name, for "did you mean".
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.relays()
            .map(|r| r.name.as_str())
            .chain(self.members().map(|(_, m)| m.name.as_str()))
    }

    /// "did you mean `x`?" for a node name that does not exist.
    pub fn suggest_node(&self, name: &str) -> String {
        match suggest::closest(name, self.node_names()) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!(
                "the inventory {} has: {}",
                self.file,
                self.node_names().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    pub fn suggest_site(&self, name: &str) -> String {
        match suggest::closest(name, self.sites.iter().map(|s| s.name.as_str())) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!(
                "sites in {}: {}",
                self.file,
                self.sites
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use relay::{CertLayout, Kind, StatsSource};

    use super::*;

    fn load(text: &str) -> Inventory {
        parse(text, Path::new("inv.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    const LAYERED: &str = r#"
defaults:
  ssh: {user: ops, connect_timeout: 5s}
  relay:
    kind: restund
    drain: {timeout: 6h, poll: 30s}
    cert: {bundle: /etc/global.pem}
sites:
  - name: a
    defaults:
      ssh: {port: 2222}
      relay:
        drain: {poll: 5s}
      min_healthy_relays: 2
    relays:
      - {name: r1, host: h1}
      - name: r2
        host: h2
        kind: coturn
        ssh: {port: 22, user: root}
        service: {container: turn}
        cert: {cert: /c.pem, key: /k.pem}
        stats: {via: coturn-cli, password_env: PW}
      - {name: r3, host: h3, kind: rtpengine, transport: local}
"#;

    #[test]
    fn nearer_levels_win_field_by_field() {
        let inv = load(LAYERED);
        let r: Vec<&Relay> = inv.relays().collect();
        // r1: ssh user from global, port from the site; drain timeout global, poll from the site.
        assert_eq!(r[0].access.ssh.user.as_deref(), Some("ops"));
        assert_eq!(r[0].access.ssh.port, 2222);
        assert_eq!(r[0].access.ssh.connect_timeout, Duration::from_secs(5));
        assert_eq!(r[0].access.ssh.known_hosts, KnownHosts::Strict);
        assert_eq!(r[0].drain.timeout, Duration::from_secs(6 * 3600));
        assert_eq!(r[0].drain.poll, Duration::from_secs(5));
        assert_eq!(r[0].drain.on_timeout, OnTimeout::Stop);
        assert!(!r[0].drain.relay_drain);
        assert_eq!(inv.sites[0].min_healthy_relays, 2);
        // r2 overrides the node-level fields.
        assert_eq!(r[1].access.ssh.user.as_deref(), Some("root"));
        assert_eq!(r[1].access.ssh.port, 22);
        assert_eq!(r[1].kind, Kind::Coturn);
    }

    #[test]
    fn grouped_settings_are_replaced_whole() {
        let inv = load(LAYERED);
        let r: Vec<&Relay> = inv.relays().collect();
        assert_eq!(
            r[0].cert,
            Some(CertLayout::Bundle {
                path: "/etc/global.pem".into()
            })
        );
        assert_eq!(
            r[1].cert,
            Some(CertLayout::Split {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        assert_eq!(r[1].service.restart, ["docker", "restart", "turn"]);
        assert_eq!(r[1].service.status_expect.as_deref(), Some("running"));
        assert_eq!(r[1].stats.password, Some(SecretRef::Env("PW".into())));
    }

    #[test]
    fn kinds_bring_their_own_defaults() {
        let inv = load(LAYERED);
        let r: Vec<&Relay> = inv.relays().collect();
        assert_eq!(
            r[0].stats.source,
            StatsSource::Turnstats {
                addr: "127.0.0.1:33000".into()
            }
        );
        assert_eq!(r[0].service.restart, ["systemctl", "restart", "restund"]);
        assert_eq!(r[2].service.restart, ["systemctl", "restart", "rtpengine-daemon"]);
        assert!(matches!(r[2].stats.source, StatsSource::RtpengineCtl { .. }));
        assert_eq!(r[2].access.transport, Transport::Local);
        assert_eq!(r[0].reboot.boot_id, ["cat", "/proc/sys/kernel/random/boot_id"]);
    }

    #[test]
    fn cluster_members_get_flavor_defaults() {
        let inv = load(
            r#"
sites:
  - name: cw
    cluster:
      flavor: clearwater
      members:
        - {name: v1, host: 10.0.0.1, role: vellum}
        - {name: v2, host: 10.0.0.2, role: vellum, management_ip: 192.0.2.2}
        - {name: s1, host: 10.0.0.3, role: sprout}
  - name: e
    cluster:
      flavor: etcd
      members:
        - {name: e1, host: "fd00::1"}
        - {name: e2, host: 10.0.1.2, data_dir: /srv/etcd}
"#,
        );
        let cw = inv.sites[0].cluster.as_ref().unwrap();
        let Flavor::Clearwater(c) = &cw.flavor else {
            panic!()
        };
        // Fewer than three vellum nodes: every node is a master.
        assert_eq!(c.masters, ["v1", "v2", "s1"]);
        assert!(
            matches!(&cw.members[1].role, MemberRole::Clearwater { management_ip, .. } if management_ip == "192.0.2.2")
        );
        let e = inv.sites[1].cluster.as_ref().unwrap();
        let Flavor::Etcd(etcd) = &e.flavor else { panic!() };
        assert_eq!((etcd.seed.as_str(), etcd.token.as_str()), ("e1", "e-etcd"));
        let MemberRole::Etcd {
            client_url, data_dir, ..
        } = &e.members[0].role
        else {
            panic!()
        };
        assert_eq!(
            (client_url.as_str(), data_dir.as_str()),
            ("http://[fd00::1]:2379", "/var/lib/etcd/default")
        );
        let MemberRole::Etcd { data_dir, .. } = &e.members[1].role else {
            panic!()
        };
        assert_eq!(data_dir, "/srv/etcd");
    }

    #[test]
    fn three_vellum_nodes_are_the_masters() {
        let inv = load(
            "sites:\n  - name: cw\n    cluster:\n      flavor: clearwater\n      members:\n\
             \x20       - {name: v1, host: a, role: vellum}\n        - {name: v2, host: b, role: vellum}\n\
             \x20       - {name: v3, host: c, role: vellum}\n        - {name: s1, host: d, role: sprout}\n",
        );
        let Flavor::Clearwater(c) = &inv.sites[0].cluster.as_ref().unwrap().flavor else {
            panic!()
        };
        assert_eq!(c.masters, ["v1", "v2", "v3"]);
    }

    #[test]
    fn relative_paths_are_beside_the_inventory() {
        // The playbooks directory must exist: one of the test's own.
        let deploy = std::env::temp_dir().join(format!("opsctl-inv-test-{}/deploy", std::process::id()));
        std::fs::create_dir_all(deploy.join("pb")).unwrap();
        let inv = parse(
            "advertise: {backend: values-file, file: values.yaml, apply: x}\nplaybooks: pb\nsites: [{name: a, relays: [{name: r, host: h, kind: relayd, urls: ['turn:h']}]}]\n",
            &deploy.join("inventory.yaml"),
        );
        let _ = std::fs::remove_dir_all(deploy.parent().unwrap());
        let inv = inv.unwrap();
        let Backend::ValuesFile { file, workdir, .. } = &inv.advertise.backend else {
            panic!()
        };
        assert_eq!(file, &deploy.join("values.yaml"));
        assert_eq!(workdir, &deploy);
        assert_eq!(inv.playbooks_dir.as_deref(), Some(deploy.join("pb").as_path()));
    }

    const RTP: &str = r#"
sites:
  - name: a
    relays:
      - name: rtp-1
        host: h1
        kind: rtpengine
        rtpengine:
          cli: 10.0.0.1:9900
          ng: "[2001:db8::1]:2223"
          redis: 10.0.0.10:6379/1
          subscribe: [2]
          interfaces: [pub1/10.0.0.1, pub2/10.0.0.2]
          redis_password_env: RTPENGINE_REDIS_AUTH_PW
      - name: rtp-2
        host: h2
        kind: rtpengine
        rtpengine: {redis: "10.0.0.10:6379/2", subscribe: [1]}
"#;

    #[test]
    fn an_rtpengine_block_gives_its_cli_redis_and_interfaces() {
        let inv = load(RTP);
        let r: Vec<&Relay> = inv.relays().collect();
        let e = r[0].rtpengine.as_ref().unwrap();
        assert_eq!(e.cli, ("10.0.0.1".to_owned(), 9900));
        assert_eq!(e.ng.as_deref(), Some("[2001:db8::1]:2223"));
        assert_eq!(
            e.redis,
            Some(Redis {
                addr: "10.0.0.10:6379".into(),
                db: 1
            })
        );
        assert_eq!(e.subscribe, [2]);
        assert_eq!(e.own_interface(), Some("pub1"));
        assert_eq!(
            e.redis_password,
            Some(SecretRef::Env("RTPENGINE_REDIS_AUTH_PW".into()))
        );
        // The stats are read through the CLI it names.
        let StatsSource::RtpengineCtl { command } = &r[0].stats.source else {
            panic!()
        };
        assert_eq!(
            command.join(" "),
            "rtpengine-ctl -ip 10.0.0.1 -port 9900 list numsessions"
        );
        let StatsSource::RtpengineCtl { command } = &r[1].stats.source else {
            panic!()
        };
        assert_eq!(
            command.join(" "),
            "rtpengine-ctl -ip 127.0.0.1 -port 9900 list numsessions"
        );
    }

    #[test]
    fn a_bad_rtpengine_block_is_refused_where_it_is_wrong() {
        let err = |text: &str| parse(text, Path::new("inv.yaml")).unwrap_err().to_string();
        let e = err(&RTP.replace("redis: \"10.0.0.10:6379/2\"", "redis: \"10.0.0.10:6379/1\""));
        assert!(
            e.contains("relays `rtp-1` and `rtp-2` both write their calls to Redis 10.0.0.10:6379/1"),
            "{e}"
        );
        let e = err(&RTP.replace("subscribe: [2]", "subscribe: [2, 1]"));
        assert!(
            e.contains("inv.yaml:12:22") && e.contains("it subscribes to its own database 1"),
            "{e}"
        );
        let e = err(&RTP.replace("10.0.0.10:6379/1", "10.0.0.10:6379"));
        assert!(e.contains("names no database"), "{e}");
        let e = err(&RTP.replace("pub2/10.0.0.2", "pub2"));
        assert!(e.contains("`pub2` is not `NAME/ADDRESS`"), "{e}");
        let e = err(&RTP.replace(
            "redis_password_env: RTPENGINE_REDIS_AUTH_PW",
            "redis_password: hunter2",
        ));
        assert!(e.contains("a password cannot be written in the inventory"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err(&RTP.replacen("kind: rtpengine", "kind: coturn", 1));
        assert!(e.contains("`rtpengine` settings on a coturn relay"), "{e}");
    }
}
