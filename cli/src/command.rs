//! Commands and the hosts they run on: the leaf that the plan, the remote
//! layer, the stats readers and `status` all build on.
//!
//! A [`Command`] holds its argument vector and the line exactly as it is sent
//! (quoted by [`crate::shell`]), with `sudo -n` in front where the node's
//! access says so. An [`Access`] is everything needed to reach a node; it
//! serializes with the plan, so a stored plan can be run again as it was.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How opsctl reaches a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    Ssh,
    /// Commands run on this machine (the lab, or opsctl running on the node).
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHosts {
    Strict,
    AcceptNew,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ssh {
    pub user: Option<String>,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: KnownHosts,
    /// A known_hosts file other than ssh's default (`~/.ssh/known_hosts`).
    pub known_hosts_file: Option<PathBuf>,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// How long one command may run before it is stopped (gates poll with their own timeouts).
    #[serde(with = "secs")]
    pub command_timeout: Duration,
    pub jump_host: Option<String>,
    /// Prefix every remote command with `sudo -n` (never prompts).
    pub sudo: bool,
}

/// Where and how a node is reached; shared by relays and config-cluster members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub host: String,
    pub transport: Transport,
    pub ssh: Ssh,
}

impl Access {
    /// This machine, for the commands a plan runs "here" (apply commands,
    /// advertise checks). They may run long: an hour before they are stopped.
    pub fn here() -> Access {
        Access {
            host: "localhost".into(),
            transport: Transport::Local,
            ssh: Ssh {
                user: None,
                port: 22,
                identity_file: None,
                known_hosts: KnownHosts::Strict,
                known_hosts_file: None,
                connect_timeout: Duration::from_secs(10),
                command_timeout: Duration::from_secs(3600),
                jump_host: None,
                sudo: false,
            },
        }
    }
}

/// A secret named by where it lives, so plans and logs can show the name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "${name}"),
            SecretRef::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl SecretRef {
    /// The secret's value, read now; the error says where it was looked
    /// for, and `file_key`, the inventory field that names a file instead.
    pub fn read(&self, what: &str, file_key: &str) -> anyhow::Result<String> {
        use anyhow::Context;
        match self {
            SecretRef::Env(name) => std::env::var(name).with_context(|| {
                format!(
                    "{what} comes from ${name}, which is not set; export it, or name a file with `{file_key}`"
                )
            }),
            SecretRef::File(path) => Ok(std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {what} file {}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned()),
        }
    }
}

/// Where a command runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// `local`, or the inventory name of the node.
    pub node: String,
    /// `local`, or `ssh://[user@]host[:port]`.
    pub address: String,
}

impl Host {
    /// This machine.
    pub fn here() -> Host {
        Host {
            node: "local".into(),
            address: "local".into(),
        }
    }

    pub fn is_here(&self) -> bool {
        self.node == "local" && self.address == "local"
    }

    /// How a node is named to people: `relay-1 (ssh://ops@10.1.0.11)`.
    pub fn of(name: &str, a: &Access) -> Host {
        match a.transport {
            Transport::Local => Host {
                node: name.to_owned(),
                address: "local".into(),
            },
            Transport::Ssh => {
                let user = a.ssh.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                let host = if a.host.contains(':') {
                    format!("[{}]", a.host)
                } else {
                    a.host.clone()
                };
                let port = if a.ssh.port == 22 {
                    String::new()
                } else {
                    format!(":{}", a.ssh.port)
                };
                Host {
                    node: name.to_owned(),
                    address: format!("ssh://{user}{host}{port}"),
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub on: Host,
    pub argv: Vec<String>,
    /// The command line exactly as sent (remote) or shown (local), arguments quoted.
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

impl Command {
    /// A command for node `name`, with `sudo -n` in front when its access says so.
    pub fn remote(name: &str, a: &Access, argv: Vec<String>) -> Command {
        let argv = if a.ssh.sudo && a.transport == Transport::Ssh {
            ["sudo".to_owned(), "-n".to_owned()]
                .into_iter()
                .chain(argv)
                .collect()
        } else {
            argv
        };
        Command {
            on: Host::of(name, a),
            line: crate::shell::join(&argv),
            argv,
            cwd: None,
        }
    }

    /// [`Command::remote`] from string slices.
    pub fn remote_str(name: &str, a: &Access, argv: &[&str]) -> Command {
        Command::remote(name, a, argv.iter().map(|s| (*s).to_owned()).collect())
    }

    /// A command run here (not on a node), in `cwd`.
    pub fn local(argv: Vec<String>, cwd: &std::path::Path) -> Command {
        Command {
            on: Host::here(),
            line: crate::shell::join(&argv),
            argv,
            cwd: Some(cwd.display().to_string()),
        }
    }
}

/// Durations as seconds (a float) in JSON.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(sudo: bool) -> Access {
        let mut a = Access::here();
        a.transport = Transport::Ssh;
        a.host = "10.0.0.1".into();
        a.ssh.user = Some("ops".into());
        a.ssh.port = 2022;
        a.ssh.sudo = sudo;
        a
    }

    #[test]
    fn sudo_goes_in_front_of_remote_commands_only() {
        let c = Command::remote_str("r1", &ssh(true), &["systemctl", "is-active", "restund"]);
        assert_eq!(c.line, "sudo -n systemctl is-active restund");
        assert_eq!(c.on.address, "ssh://ops@10.0.0.1:2022");
        let mut local = ssh(true);
        local.transport = Transport::Local;
        let c = Command::remote_str("r1", &local, &["true"]);
        assert_eq!(c.line, "true");
    }

    #[test]
    fn access_round_trips_through_json() {
        let a = ssh(true);
        let back: Access = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
