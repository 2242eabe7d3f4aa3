//! Walks the inventory tree: reads each level, merges defaults into nodes, and
//! checks what spans nodes (unique names, references, advertised URLs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay::{CertLayout, Kind, StatsSource};

use super::layers::{Defaults, Manager, RelayLayer, SshLayer};
use super::model::*;
use super::read;
use crate::reader::{At, MapReader};
use crate::template::Template;
use crate::yaml::Pos;

const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_DRAIN_POLL: Duration = Duration::from_secs(10);
const DEFAULT_REBOOT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Names as they were read, kept even when the node around them had problems,
/// so a duplicate is reported in the same run as everything else.
type Names = RefCell<Vec<(String, Pos, String)>>;

/// What the walk over sites needs from the top of the file.
struct Walk {
    global: Defaults,
    nodes: Names,
    sites: Names,
    /// Every relay URL, with the relay that lists it, where, and its path.
    urls: RefCell<Vec<(String, String, Pos, String)>>,
    /// With the `values-file` backend every relay needs `urls`.
    needs_urls: bool,
    /// The inventory's directory, for relative paths.
    dir: PathBuf,
}

fn note_name(names: &Names, name: &Option<String>, at: &At) {
    if let Some(n) = name {
        names.borrow_mut().push((n.clone(), at.pos(), at.path.clone()));
    }
}

/// The `defaults:` block of the file or of a site; empty when absent.
fn defaults_block(m: &mut MapReader) -> Defaults {
    let Some(mut d) = m.get("defaults").and_then(|a| a.map()) else {
        return Defaults::default();
    };
    let out = read::defaults(&mut d);
    d.finish();
    out
}

/// A path from the inventory, relative to the inventory's directory.
fn beside(dir: &std::path::Path, p: &str) -> PathBuf {
    if p == "." {
        dir.to_path_buf()
    } else if dir == std::path::Path::new(".") {
        PathBuf::from(p)
    } else {
        dir.join(p)
    }
}

pub fn inventory(root: &At, file: String, dir: PathBuf) -> Option<Inventory> {
    let mut m = root.map()?;
    let playbooks_dir = m.get("playbooks").and_then(|a| {
        let p = beside(&dir, &a.word("path")?);
        check_playbooks_dir(&a, &p);
        Some(p)
    });
    let global = defaults_block(&mut m);
    // `cert: {ca: FILE}`: roots clients trust besides the system's (a private CA).
    let cert_ca = m.get("cert").and_then(|a| {
        let mut c = a.map()?;
        let ca = c
            .require("ca", "name the file of CA certificates clients trust, e.g. `ca: certs/ca.pem`")
            .and_then(|f| {
                let p = beside(&dir, &f.word("path")?);
                if !p.is_file() {
                    f.error(
                        format!("the CA file {} does not exist", p.display()),
                        Some("name a PEM file of the root certificates clients trust, relative to the inventory".into()),
                    );
                }
                Some(p)
            });
        c.finish();
        ca
    });
    // `lock: {dir: PATH, backend: auto|nodes}`: where on the nodes a run's
    // site locks live, and whether a site's etcd cluster holds them.
    let mut lock_etcd = true;
    let mut lock_lease = crate::lock::LEASE_TTL;
    let lock_dir = m
        .get("lock")
        .and_then(|a| {
            let mut l = a.map()?;
            if let Some(b) = l.get("backend") {
                match b.word("backend").as_deref() {
                    Some("auto") => {}
                    Some("nodes") => lock_etcd = false,
                    Some(other) => b.error(
                        format!("unknown lock backend `{other}`"),
                        Some("use `auto` (an etcd lease where the site has an etcd cluster, else the nodes) or `nodes`".into()),
                    ),
                    None => {}
                }
            }
            if let Some(d) = l.get("lease").and_then(|t| t.duration()) {
                lock_lease = d;
            }
            let d = l
                .get("dir")
                .and_then(|d| {
                    let p = d.word("path")?;
                    if !p.starts_with('/') {
                        d.error(
                            format!("`{p}` is not an absolute path"),
                            Some("the lock directory is on the nodes: give its absolute path".into()),
                        );
                        return None;
                    }
                    Some(p)
                });
            l.finish();
            d
        })
        .unwrap_or_else(|| DEFAULT_LOCK_DIR.to_owned());
    let advertise = m
        .get("advertise")
        .map(|a| advertise(&a, &dir))
        .unwrap_or(Some(Advertise {
            backend: Backend::None,
            check: None,
        }));
    let walk = Walk {
        global,
        nodes: Names::default(),
        sites: Names::default(),
        urls: RefCell::default(),
        dir: dir.clone(),
        needs_urls: matches!(
            advertise,
            Some(Advertise {
                backend: Backend::ValuesFile { .. },
                ..
            })
        ),
    };
    let mut sites = Vec::new();
    if let Some(list) = m
        .require(
            "sites",
            "list the deployment's sites, each with `name` and `relays`",
        )
        .and_then(|a| a.list())
    {
        for at in &list {
            sites.push(site(at, &walk));
        }
        if list.is_empty() {
            root.error(
                "`sites` is empty",
                Some("add at least one site with relays or a cluster".into()),
            );
        }
    }
    m.finish();
    check_unique(
        root,
        &walk.nodes.into_inner(),
        "node",
        "node names must be unique across relays and cluster members",
    );
    check_unique(root, &walk.sites.into_inner(), "site", "rename one of the sites");
    // A URL of two relays would take the wrong one out of the list.
    let mut claimed: HashMap<String, (String, Pos)> = HashMap::new();
    for (url, relay, pos, path) in walk.urls.into_inner() {
        match claimed.get(&url) {
            Some((first, at)) if *first != relay => root.diags.report(
                pos,
                &path,
                format!(
                    "`{url}` is a URL of relay `{first}` (line {}) and of relay `{relay}`",
                    at.line
                ),
                Some("each URL clients receive belongs to one relay: give each relay only its own".into()),
            ),
            Some(_) => root.diags.report(
                pos,
                &path,
                format!("`{url}` is listed twice for relay `{relay}`"),
                Some("list each URL once".into()),
            ),
            None => {
                claimed.insert(url, (relay, pos));
            }
        }
    }

    let sites: Vec<Site> = sites.into_iter().collect::<Option<_>>()?;
    let inv = Inventory {
        file,
        dir,
        playbooks_dir,
        cert_ca,
        lock_dir,
        lock_etcd,
        lock_lease,
        advertise: advertise?,
        sites,
    };
    Some(inv)
}

fn site(at: &At, walk: &Walk) -> Option<Site> {
    let mut m = at.map()?;
    let name = m
        .require("name", "give the site a name, e.g. `name: dc1`")
        .and_then(|a| a.name());
    note_name(&walk.sites, &name, at);
    let own = defaults_block(&mut m);
    let defaults = own.over(&walk.global);
    let site_name = name.clone().unwrap_or_default();
    let mut relays = Vec::new();
    if let Some(list) = m.get("relays").and_then(|a| a.list()) {
        for r in &list {
            relays.push(relay(r, &defaults, &site_name, walk));
        }
    }
    let cluster = m.get("cluster").map(|c| cluster(&c, &defaults, &site_name, walk));
    m.finish();
    let min_healthy_relays = defaults.min_healthy_relays.unwrap_or(1);
    if !relays.is_empty() && min_healthy_relays > relays.len() {
        at.error(
            format!(
                "site `{site_name}` has {} relay{} but `min_healthy_relays` is {min_healthy_relays}: no relay could ever be taken out of service",
                relays.len(),
                if relays.len() == 1 { "" } else { "s" }
            ),
            Some(format!(
                "lower `min_healthy_relays` (in the site's `defaults:` or the file's) to at most {}",
                relays.len()
            )),
        );
    }
    let relays: Vec<Relay> = relays.into_iter().collect::<Option<_>>()?;
    check_redis_databases(at, &site_name, &relays);
    Some(Site {
        name: name?,
        min_healthy_relays,
        relays,
        cluster: match cluster {
            Some(c) => Some(c?),
            None => None,
        },
    })
}

fn access(m: &mut MapReader, defaults: &Defaults, dir: &Path) -> (Option<String>, Transport, Ssh) {
    let host = m
        .require("host", "the address opsctl connects to, e.g. `host: 10.0.0.11`")
        .and_then(|a| a.host());
    let transport = m
        .get("transport")
        .and_then(|a| read::transport(&a))
        .or(defaults.transport)
        .unwrap_or(Transport::Ssh);
    let own = m
        .get("ssh")
        .and_then(|a| a.map())
        .map(|mut s| {
            let out = read::ssh(&mut s);
            s.finish();
            out
        })
        .unwrap_or_default();
    (host, transport, ssh(own.over(&defaults.ssh), dir))
}

/// Key and known_hosts paths written relative are relative to the inventory;
/// `~/...` is left for ssh to expand.
fn ssh(l: SshLayer, dir: &Path) -> Ssh {
    let local = |p: PathBuf| {
        if p.is_relative() && !p.starts_with("~") {
            beside(dir, &p.to_string_lossy())
        } else {
            p
        }
    };
    Ssh {
        user: l.user,
        port: l.port.unwrap_or(22),
        identity_file: l.identity_file.map(local),
        known_hosts: l.known_hosts.unwrap_or(KnownHosts::Strict),
        known_hosts_file: l.known_hosts_file.map(local),
        connect_timeout: l.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        command_timeout: l.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        jump_host: l.jump_host,
        sudo: l.sudo.unwrap_or(false),
    }
}

fn relay(at: &At, defaults: &Defaults, site: &str, walk: &Walk) -> Option<Relay> {
    let mut m = at.map()?;
    let name = m
        .require("name", "give the relay a unique name, e.g. `name: relay-1`")
        .and_then(|a| a.name());
    note_name(&walk.nodes, &name, at);
    let (host, transport, ssh) = access(&mut m, defaults, &walk.dir);
    let urls_at = m.get("urls");
    if urls_at.is_none() && walk.needs_urls {
        at.error(
            "no `urls`: the `values-file` backend takes a relay out of the advertised list by its URLs",
            Some("list the URLs the values file advertises for this relay under `urls:`".into()),
        );
    }
    let urls = match &urls_at {
        Some(a) => read::strings(a),
        None => Some(Vec::new()),
    };
    if let (Some(a), Some(list)) = (&urls_at, &urls) {
        let items = a.list().unwrap_or_default();
        for (url, item) in list.iter().zip(&items) {
            walk.urls.borrow_mut().push((
                url.clone(),
                name.clone().unwrap_or_default(),
                item.pos(),
                item.path.clone(),
            ));
        }
        for (i, url) in list.iter().enumerate() {
            if let Err(e) = check_ice_url(url) {
                let item = &a.list().unwrap_or_default()[i];
                item.error(
                    e,
                    Some(
                        "write it as clients get it, e.g. `turn:turn1.example.com:3478?transport=tcp`".into(),
                    ),
                );
            }
        }
    }
    let rtp_at = m.get("rtpengine");
    let rtpengine = rtp_at.as_ref().and_then(read::rtpengine);
    let own = read::relay_settings(&mut m);
    m.finish();
    let l = own.over(&defaults.relay);
    let kind = match l.kind {
        Some(Some(kind)) => kind,
        Some(None) => return None,
        None => {
            at.error(
                "missing field `kind`",
                Some(
                    "set `kind:` (restund, coturn, rtpengine or relayd) on the relay or in `defaults.relay`"
                        .into(),
                ),
            );
            return None;
        }
    };
    if let Some(a) = &rtp_at
        && kind != Kind::Rtpengine
    {
        a.error(
            format!("`rtpengine` settings on a {kind} relay"),
            Some("remove the block, or set `kind: rtpengine`".into()),
        );
    }
    // Every rtpengine has a CLI; without a block, rtpengine's default one.
    let rtpengine = match (kind, rtpengine, &rtp_at) {
        (Kind::Rtpengine, Some(e), _) => Some(e),
        (Kind::Rtpengine, None, None) => Some(Rtpengine::default()),
        _ => None,
    };
    let stats = stats(at, &l, kind, rtpengine.as_ref());
    let cert = cert(&l, kind);
    let service = service(&l, kind);
    Some(Relay {
        name: name?,
        site: site.to_owned(),
        access: Access {
            host: host?,
            transport,
            ssh,
        },
        kind,
        urls: urls?,
        stats: stats?,
        service,
        cert,
        drain: Drain {
            timeout: l.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            poll: l.drain_poll.unwrap_or(DEFAULT_DRAIN_POLL),
            threshold: l.drain_threshold.unwrap_or(0),
            // Allocations of vanished clients live up to 10 min; say so well before.
            stuck_after: l.drain_stuck_after.unwrap_or(std::time::Duration::from_secs(120)),
            on_timeout: l.drain_on_timeout.unwrap_or(OnTimeout::Stop),
            relay_drain: l.relay_drain.unwrap_or(false),
        },
        stun_check: l.stun_check.unwrap_or(false),
        reboot: Reboot {
            command: l.reboot_command.unwrap_or_else(|| {
                // A transient timer lets the SSH command return before the host goes down.
                ["systemd-run", "--on-active=2", "systemctl", "reboot"]
                    .map(String::from)
                    .to_vec()
            }),
            boot_id: l
                .boot_id
                .unwrap_or_else(|| vec!["cat".into(), "/proc/sys/kernel/random/boot_id".into()]),
            timeout: l.reboot_timeout.unwrap_or(DEFAULT_REBOOT_TIMEOUT),
        },
        rtpengine,
    })
}

/// The host of an ICE server URL (`turn:host:3478?transport=tcp` gives
/// `host`, `turn:[2001:db8::1]:3478` gives `2001:db8::1`), if it is one.
pub fn ice_host(url: &str) -> Option<&str> {
    check_ice_url(url).ok()?;
    let rest = url.split_once(':')?.1;
    let hostport = rest.split_once('?').map_or(rest, |(h, _)| h);
    match hostport.strip_prefix('[') {
        Some(v6) => Some(v6.split_once(']')?.0),
        None => Some(
            hostport
                .rsplit_once(':')
                .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                .map_or(hostport, |(host, _)| host),
        ),
    }
}

/// An ICE server URL as RFC 7065 writes it: `turn:`/`turns:`/`stun:` host[:port][?transport=..].
fn check_ice_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(format!("`{url}` is not a TURN/STUN URL"));
    };
    if !matches!(scheme, "turn" | "turns" | "stun" | "stuns") {
        return Err(format!(
            "`{url}` has scheme `{scheme}`; expected turn, turns, stun or stuns"
        ));
    }
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if hostport.is_empty() || hostport.starts_with('/') {
        return Err(format!("`{url}` names no host"));
    }
    if !query.is_empty() && !matches!(query, "transport=udp" | "transport=tcp") {
        return Err(format!(
            "`{url}` has query `{query}`; only `transport=udp` or `transport=tcp` is allowed"
        ));
    }
    Ok(())
}

fn stats(at: &At, l: &RelayLayer, kind: Kind, rtp: Option<&Rtpengine>) -> Option<Stats> {
    let mut default = kind.default_stats();
    // rtpengine-ctl reaches the CLI the `rtpengine` block names.
    if let (StatsSource::RtpengineCtl { command }, Some(r)) = (&mut default, rtp) {
        *command = r.ctl(&["list", "numsessions"]);
    }
    let Some(s) = &l.stats else {
        return Some(Stats {
            source: default,
            read_on: ReadOn::Node,
            password: None,
        });
    };
    let via = s.via.clone().unwrap_or_else(|| default.via().to_owned());
    let same_via = via == default.via();
    let source = match via.as_str() {
        "turnstats" => StatsSource::Turnstats {
            addr: s.addr.clone().unwrap_or_else(|| "127.0.0.1:33000".into()),
        },
        "coturn-cli" => StatsSource::CoturnCli {
            addr: s.addr.clone().unwrap_or_else(|| "127.0.0.1:5766".into()),
        },
        "prometheus" => StatsSource::Prometheus {
            url: s
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:9641/metrics".into()),
        },
        _ => StatsSource::RtpengineCtl {
            command: s.command.clone().unwrap_or_else(|| match (&default, same_via) {
                (StatsSource::RtpengineCtl { command }, true) => command.clone(),
                _ => ["rtpengine-ctl", "list", "numsessions"]
                    .map(String::from)
                    .to_vec(),
            }),
        },
    };
    if matches!(source, StatsSource::CoturnCli { .. }) && s.password.is_none() {
        at.diags.report(
            s.pos,
            &format!("{}.stats", at.path),
            "the coturn admin CLI needs a password",
            Some("set `password_env: VAR` or `password_file: PATH` (coturn's `cli-password`)".into()),
        );
    }
    Some(Stats {
        source,
        read_on: s.read_on.unwrap_or(ReadOn::Node),
        password: s.password.clone(),
    })
}

fn cert(l: &RelayLayer, kind: Kind) -> Option<CertLayout> {
    match &l.cert {
        Some((c, _)) => match (&c.bundle, &c.cert, &c.key) {
            (Some(b), _, _) => Some(CertLayout::Bundle { path: b.clone() }),
            (None, Some(cert), Some(key)) => Some(CertLayout::Split {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        None => kind.default_cert(),
    }
}

fn service(l: &RelayLayer, kind: Kind) -> Service {
    let manager = l
        .manager
        .as_ref()
        .map(|(m, _)| m.clone())
        .unwrap_or_else(|| Manager::Systemd(kind.default_unit().to_owned()));
    let mut s = manager_commands(&manager, kind.cert_reload_signal());
    if kind == Kind::Coturn {
        s.version = Some(running_version(&manager, "turnserver"));
    }
    s.drain = kind.drain_signal().map(|sig| signal(&manager, sig));
    let pick = |own: &Option<Vec<String>>, default: &mut Vec<String>| {
        if let Some(c) = own {
            *default = c.clone();
        }
    };
    pick(&l.stop, &mut s.stop);
    pick(&l.start, &mut s.start);
    pick(&l.restart, &mut s.restart);
    if let Some(c) = &l.status {
        s.status = c.clone();
        s.status_expect = None;
    }
    if let Some(e) = &l.status_expect {
        s.status_expect = Some(e.clone());
    }
    if let Some(r) = &l.reload {
        s.reload = Some(r.clone());
    }
    s
}

/// The service commands of a unit or container; `reload` is the signal
/// that makes the service load a new certificate, if it has one (SIGHUP is
/// what `systemctl reload` sends to a unit that declares it).
pub fn manager_commands(manager: &Manager, reload: Option<&str>) -> Service {
    let argv = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    match manager {
        Manager::Systemd(u) => Service {
            stop: argv(&["systemctl", "stop", u]),
            start: argv(&["systemctl", "start", u]),
            restart: argv(&["systemctl", "restart", u]),
            status: argv(&["systemctl", "is-active", u]),
            status_expect: Some("active".into()),
            reload: reload.map(|sig| match sig {
                "HUP" => argv(&["systemctl", "reload", u]),
                sig => signal(manager, sig),
            }),
            version: None,
            drain: None,
        },
        Manager::Docker(c) => Service {
            stop: argv(&["docker", "stop", c]),
            start: argv(&["docker", "start", c]),
            restart: argv(&["docker", "restart", c]),
            status: argv(&[
                "docker",
                "container",
                "inspect",
                "--format",
                "{{.State.Status}}",
                c,
            ]),
            status_expect: Some("running".into()),
            reload: reload.map(|sig| signal(manager, sig)),
            version: None,
            drain: None,
        },
    }
}

/// Sends `sig` (`USR1`) to the service's process.
fn signal(manager: &Manager, sig: &str) -> Vec<String> {
    match manager {
        Manager::Systemd(u) => vec![
            "systemctl".into(),
            "kill".into(),
            format!("--signal=SIG{sig}"),
            u.clone(),
        ],
        Manager::Docker(c) => ["docker", "kill", "--signal", sig, c].map(String::from).to_vec(),
    }
}

/// Prints the `--version` of the service's process running now: the
/// binary it was started from, even if an upgrade has since replaced the
/// file (`/proc/PID/exe`); in a container, `binary` there.
fn running_version(manager: &Manager, binary: &str) -> Vec<String> {
    const SCRIPT: &str = r#"pid=$(systemctl show --property=MainPID --value "$1") || exit
case $pid in ''|0) echo "$1 is not running" >&2; exit 3 ;; esac
exec "/proc/$pid/exe" --version"#;
    match manager {
        Manager::Systemd(u) => ["sh", "-c", SCRIPT, "opsctl-version", u]
            .map(String::from)
            .to_vec(),
        Manager::Docker(c) => ["docker", "exec", c, binary, "--version"]
            .map(String::from)
            .to_vec(),
    }
}

fn advertise(at: &At, dir: &std::path::Path) -> Option<Advertise> {
    let mut m = at.map()?;
    let backend = m
        .require("backend", "one of `values-file`, `command` or `none`")
        .and_then(|a| a.choice(&[("values-file", 0u8), ("command", 1), ("none", 2)]));
    let file = m.get("file").and_then(|a| a.word("path"));
    let list = m.get("list").and_then(|a| {
        let path = a.name()?;
        if path.split('.').any(str::is_empty) {
            a.error(
                format!("`{path}` is not a path of keys"),
                Some("write the keys from the top of the values file down, joined by dots, e.g. `brig.turnStatic.v2`".into()),
            );
            return None;
        }
        Some(path)
    });
    let apply = m.get("apply").and_then(|a| a.argv());
    let remove = m.get("remove").and_then(|a| command_template(&a));
    let restore = m.get("restore").and_then(|a| command_template(&a));
    let then = m.get("then").and_then(|a| read::commands(&a)).unwrap_or_default();
    let workdir = m
        .get("workdir")
        .and_then(|a| a.name())
        .map(|w| beside(dir, &w))
        .unwrap_or_else(|| dir.to_path_buf());
    let check = m.get("check").and_then(|c| {
        let mut cm = c.map()?;
        let url = cm.get("url").and_then(|a| a.name());
        let command = cm.get("command").and_then(|a| a.argv());
        let out = match (url, command) {
            (Some(u), None) => Some(AdvertiseCheck::Url(u)),
            (None, Some(c)) => Some(AdvertiseCheck::Command(c)),
            _ => {
                cm.at.error(
                    "set exactly one of `url` or `command`",
                    Some("`url:` is brig's /calls/config/v2; `command:` prints that JSON".into()),
                );
                None
            }
        };
        cm.finish();
        out
    });
    let need = |m: &MapReader, key: &str, what: &str, v: bool| {
        if !v {
            m.at.error(format!("the `{what}` backend needs `{key}`"), None);
        }
    };
    let backend = match backend? {
        0 => {
            need(&m, "file", "values-file", file.is_some());
            need(&m, "apply", "values-file", apply.is_some());
            Backend::ValuesFile {
                file: beside(dir, &file.clone().unwrap_or_default()),
                list: list.clone().unwrap_or_else(|| DEFAULT_LIST.to_owned()),
                apply: apply.clone().unwrap_or_default(),
                then,
                workdir,
            }
        }
        1 => {
            need(&m, "remove", "command", remove.is_some());
            need(&m, "restore", "command", restore.is_some());
            Backend::Command {
                remove: remove.clone().unwrap_or_default(),
                restore: restore.clone().unwrap_or_default(),
                then,
                workdir,
            }
        }
        _ => Backend::None,
    };
    m.finish();
    Some(Advertise { backend, check })
}

/// The override directory must exist, and each playbook in it must replace
/// a built-in one: a file that matches none would be silently ignored.
fn check_playbooks_dir(at: &At, dir: &std::path::Path) {
    let names = crate::playbook::BUILT_IN.map(|(n, _)| n);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            at.error(
                format!("the playbooks directory {} cannot be read: {e}", dir.display()),
                Some("create it, or remove `playbooks:` to use the built-in playbooks".into()),
            );
            return;
        }
    };
    let mut unknown: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("yaml"))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .filter(|stem| !names.contains(&stem.as_str()))
        .collect();
    unknown.sort();
    for stem in unknown {
        at.error(
            format!(
                "{}/{stem}.yaml replaces no built-in playbook, so it would never be used",
                dir.display()
            ),
            Some(format!(
                "{}name it after the one it replaces: {}",
                crate::suggest::closest(&stem, names)
                    .map(|n| format!("did you mean `{n}.yaml`? "))
                    .unwrap_or_default(),
                names.map(|n| format!("{n}.yaml")).join(", ")
            )),
        );
    }
}

/// Where Wire's values file keeps the list of TURN servers clients receive.
pub const DEFAULT_LIST: &str = "brig.turnStatic.v2";

/// Placeholders an advertise `command` may use.
pub const ADVERTISE_VARS: &[&str] = &["node", "host", "site"];

fn command_template(at: &At) -> Option<Vec<Template>> {
    let argv = at.argv()?;
    let mut out = Vec::new();
    for arg in argv {
        match Template::parse(&arg, ADVERTISE_VARS) {
            Ok(t) => out.push(t),
            Err((msg, help)) => {
                at.error(msg, help);
                return None;
            }
        }
    }
    Some(out)
}

fn cluster(at: &At, defaults: &Defaults, site: &str, walk: &Walk) -> Option<Cluster> {
    let mut m = at.map()?;
    let flavor = m
        .require("flavor", "`clearwater` or `etcd`")
        .and_then(|a| a.choice(&[("clearwater", true), ("etcd", false)]));
    // Flavor-specific keys are all read (so neither is "unknown"), then checked.
    let local_config = m.get("local_config").and_then(|a| a.word("path"));
    let shared_config = m.get("shared_config").and_then(|a| a.word("path"));
    let masters_at = m.get("masters");
    let masters = masters_at.as_ref().and_then(read::strings);
    let seed_at = m.get("seed");
    let seed = seed_at.as_ref().and_then(|a| a.name());
    let token = m.get("token").and_then(|a| a.word("cluster token"));
    let etcdctl = m.get("etcdctl").and_then(|a| a.word("command"));
    let etcdutl = m.get("etcdutl").and_then(|a| a.word("command"));
    let data_dir = m.get("data_dir").and_then(|a| a.word("path"));
    let env_file = m.get("env_file").and_then(|a| a.word("path"));
    let unit = m.get("unit").and_then(|a| a.word("unit name"));
    let members_at = m.require("members", "list the cluster's members");
    let is_clearwater = flavor?;
    let wrong: &[(&str, bool)] = if is_clearwater {
        &[
            ("seed", seed.is_some()),
            ("token", token.is_some()),
            ("etcdctl", etcdctl.is_some()),
            ("etcdutl", etcdutl.is_some()),
            ("env_file", env_file.is_some()),
            ("unit", unit.is_some()),
        ]
    } else {
        &[
            ("masters", masters.is_some()),
            ("local_config", local_config.is_some()),
            ("shared_config", shared_config.is_some()),
        ]
    };
    for (key, set) in wrong {
        if *set {
            m.at.error(
                format!(
                    "`{key}` does not apply to a `{}` cluster",
                    if is_clearwater { "clearwater" } else { "etcd" }
                ),
                Some("remove it, or check `flavor`".into()),
            );
        }
    }
    let mut members = Vec::new();
    if let Some(list) = members_at.and_then(|a| a.list()) {
        for item in &list {
            let shared = MemberDefaults {
                clearwater: is_clearwater,
                data_dir: data_dir.as_deref(),
                env_file: env_file.as_deref(),
                unit: unit.as_deref(),
            };
            members.push(member(item, defaults, &shared, walk));
        }
        if list.is_empty() {
            m.at.error("`members` is empty", None);
        }
    }
    m.finish();
    let members: Vec<Member> = members.into_iter().collect::<Option<_>>()?;
    let names: Vec<&str> = members.iter().map(|x| x.name.as_str()).collect();
    let check_ref = |at: &At, name: &str| {
        if !names.contains(&name) {
            let help = crate::suggest::closest(name, names.iter().copied())
                .map(|n| format!("did you mean `{n}`?"))
                .unwrap_or_else(|| format!("members of this cluster: {}", names.join(", ")));
            at.error(format!("no member named `{name}` in this cluster"), Some(help));
        }
    };
    let flavor = if is_clearwater {
        let masters_chosen = masters.is_some();
        let masters = match (&masters_at, masters) {
            (Some(a), Some(list)) => {
                for (i, name) in list.iter().enumerate() {
                    check_ref(&a.list().unwrap_or_default()[i], name);
                }
                list
            }
            _ => super::model::masters_of(&members),
        };
        Flavor::Clearwater(Clearwater {
            local_config: local_config.unwrap_or_else(|| "/etc/clearwater/local_config".into()),
            shared_config: shared_config.unwrap_or_else(|| "/etc/clearwater/shared_config".into()),
            data_dir: data_dir.unwrap_or_else(|| "/var/lib/clearwater-etcd".into()),
            masters,
            masters_chosen,
        })
    } else {
        if let (Some(a), Some(s)) = (&seed_at, &seed) {
            check_ref(a, s);
        }
        Flavor::Etcd(Etcd {
            token: token.unwrap_or_else(|| format!("{site}-etcd")),
            seed: seed.unwrap_or_else(|| names.first().map(|s| (*s).to_owned()).unwrap_or_default()),
            etcdctl: etcdctl.unwrap_or_else(|| "etcdctl".into()),
            etcdutl: etcdutl.unwrap_or_else(|| "etcdutl".into()),
        })
    };
    Some(Cluster {
        site: site.to_owned(),
        flavor,
        members,
    })
}

/// What a cluster says for all of its members.
struct MemberDefaults<'a> {
    clearwater: bool,
    data_dir: Option<&'a str>,
    env_file: Option<&'a str>,
    unit: Option<&'a str>,
}

fn member(at: &At, defaults: &Defaults, shared: &MemberDefaults, walk: &Walk) -> Option<Member> {
    let MemberDefaults {
        clearwater,
        data_dir,
        env_file,
        unit,
    } = *shared;
    let mut m = at.map()?;
    let name = m
        .require("name", "give the member a unique name")
        .and_then(|a| a.name());
    note_name(&walk.nodes, &name, at);
    let (host, transport, ssh) = access(&mut m, defaults, &walk.dir);
    let role = m.get("role");
    let mgmt = m.get("management_ip").and_then(|a| a.host());
    let local_ip = m.get("local_ip").and_then(|a| a.host());
    let client_url = m.get("client_url").and_then(|a| a.word("URL"));
    let peer_url = m.get("peer_url").and_then(|a| a.word("URL"));
    let own_data_dir = m.get("data_dir").and_then(|a| a.word("path"));
    let own_env_file = m.get("env_file").and_then(|a| a.word("path"));
    m.finish();
    let host = host?;
    let member_role = if clearwater {
        let role = match role {
            Some(r) => r.choice(&ClearwaterRole::ALL)?,
            None => {
                at.error(
                    "missing field `role`",
                    Some("one of bono, sprout, dime, homer, vellum, ellis".into()),
                );
                return None;
            }
        };
        MemberRole::Clearwater {
            role,
            local_ip: local_ip.unwrap_or_else(|| mgmt.clone().unwrap_or_else(|| host.clone())),
            management_ip: mgmt.unwrap_or_else(|| host.clone()),
        }
    } else {
        if let Some(r) = role {
            r.error("`role` applies only to `clearwater` members", None);
        }
        let url_host = read::bracket_v6(&host);
        MemberRole::Etcd {
            client_url: client_url.unwrap_or_else(|| format!("http://{url_host}:2379")),
            peer_url: peer_url.unwrap_or_else(|| format!("http://{url_host}:2380")),
            data_dir: own_data_dir
                .or_else(|| data_dir.map(str::to_owned))
                .unwrap_or_else(|| "/var/lib/etcd/default".into()),
            env_file: own_env_file
                .or_else(|| env_file.map(str::to_owned))
                .unwrap_or_else(|| "/etc/default/etcd".into()),
            service: manager_commands(&Manager::Systemd(unit.unwrap_or("etcd").to_owned()), None),
        }
    };
    Some(Member {
        name: name?,
        access: Access { host, transport, ssh },
        role: member_role,
    })
}

/// Two rtpengines writing their own calls to one Redis database would
/// take each other's calls for their own.
fn check_redis_databases(at: &At, site: &str, relays: &[Relay]) {
    let mut seen: HashMap<(&str, u32), &str> = HashMap::new();
    for r in relays {
        let Some(redis) = r.rtpengine.as_ref().and_then(|e| e.redis.as_ref()) else {
            continue;
        };
        if let Some(first) = seen.insert((redis.addr.as_str(), redis.db), &r.name) {
            at.error(
                format!(
                    "site `{site}`: relays `{first}` and `{}` both write their calls to Redis {}/{}",
                    r.name, redis.addr, redis.db
                ),
                Some("give each rtpengine a database of its own (`redis: HOST:PORT/DB`)".into()),
            );
        }
    }
}

/// Node names are how every command addresses a node; site names select sites.
fn check_unique(root: &At, names: &[(String, Pos, String)], what: &str, help: &str) {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (name, pos, path) in names {
        match seen.get(name.as_str()) {
            Some(first) => root.diags.report(
                *pos,
                path,
                format!(
                    "duplicate {what} name `{name}` (first used on line {})",
                    first.line
                ),
                Some(help.to_owned()),
            ),
            None => {
                seen.insert(name, *pos);
            }
        }
    }
}
