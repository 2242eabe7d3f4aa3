//! `opsctl lab`: a small deployment on this machine, for a first look and
//! for trying procedures without touching anything real.
//!
//! Three relayd relays on loopback addresses, a values file that advertises
//! them, and a call simulator making real TURN calls on the advertised ones;
//! `lab/inventory.yaml` describes it all with `transport: local` nodes whose
//! service commands are this binary's `lab service`. No root, no SSH keys.

pub mod relays;
pub mod simulator;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use relays::{STATUS_PORT, TURN_PORT, ip, name};

/// The lab's files, beside each other in one directory.
pub struct Lab {
    pub dir: PathBuf,
}

impl Lab {
    pub fn new(dir: &Path) -> anyhow::Result<Lab> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)?;
        Ok(Lab { dir })
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    pub fn values(&self) -> PathBuf {
        self.dir.join("values.yaml")
    }

    /// How many relays it has.
    pub fn relays(&self) -> usize {
        relays::count(&self.dir)
    }

    /// Starts `n` relays, writes the values file and inventory, starts the
    /// simulator (`calls` at once, each `call_length` long) unless `calls` is None.
    pub fn up(&self, n: usize, calls: Option<(usize, Duration)>) -> anyhow::Result<()> {
        // A running lab keeps its size: relays past a smaller count would
        // run on where `lab down` no longer looks.
        let was = self.relays();
        if was != n && (0..was).any(|i| relays::pid(&self.dir, i).is_some()) {
            bail!(
                "the lab in {} is up with {was} relays\nhelp: `opsctl lab down --dir {}` first to start it with {n}",
                self.dir.display(),
                self.dir.display()
            );
        }
        relays::choose_count(&self.dir, n)?;
        relays::choose_net(&self.dir)?;
        self.write_files()?;
        for i in 0..n {
            relays::start(&self.dir, i)?;
        }
        if let Some((concurrent, length)) = calls {
            self.start_simulator(concurrent, length)?;
        }
        Ok(())
    }

    /// Stops everything the lab started, by pid; the files stay for a look.
    pub fn down(&self) -> anyhow::Result<()> {
        let stop = self.dir.join("run/simulator.stop");
        if let Some(pid) = relays::running(&self.dir.join("run/simulator.pid")) {
            std::fs::write(&stop, "")?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while relays::alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if relays::alive(pid) {
                relays::terminate(pid)?;
            }
        }
        let _ = std::fs::remove_file(stop);
        let _ = std::fs::remove_file(self.dir.join("run/simulator.pid"));
        for i in 0..self.relays() {
            relays::stop(&self.dir, i)?;
        }
        Ok(())
    }

    fn start_simulator(&self, concurrent: usize, length: Duration) -> anyhow::Result<()> {
        if relays::running(&self.dir.join("run/simulator.pid")).is_some() {
            return Ok(());
        }
        let _ = std::fs::remove_file(self.dir.join("run/simulator.stop"));
        let _ = std::fs::remove_file(self.dir.join("calls.json"));
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(self.dir.join("log/simulator.log"))?;
        let child = Command::new(exe)
            .args(["lab", "simulate", "--dir"])
            .arg(&self.dir)
            .arg("--concurrent")
            .arg(concurrent.to_string())
            .arg("--call-length")
            .arg(crate::duration::format(length))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start the call simulator")?;
        std::fs::write(self.dir.join("run/simulator.pid"), format!("{}\n", child.id()))?;
        Ok(())
    }

    fn write_files(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("run"))?;
        std::fs::create_dir_all(self.dir.join("log"))?;
        let mut values = String::from(
            "# The lab's advertised list, in the shape of a wire-server Helm values file:\n\
             # brig hands clients these TURN servers. opsctl comments a relay out to take it\n\
             # out of service and back in to return it.\n\
             brig:\n  turnStatic:\n    v2:\n",
        );
        for i in 0..self.relays() {
            values.push_str(&format!(
                "      - turn:{ip}:{TURN_PORT} # {n}\n      - turn:{ip}:{TURN_PORT}?transport=tcp # {n}\n",
                ip = ip(&self.dir, i),
                n = name(i)
            ));
        }
        if !self.values().exists() {
            std::fs::write(self.values(), values)?;
        }
        let exe = std::env::current_exe()?.display().to_string();
        let dir = self.dir.display().to_string();
        let q = |s: &str| format!("{s:?}");
        let cmd = |args: &[&str]| {
            let mut all = vec![q(&exe), q("lab")];
            all.extend(args.iter().map(|a| q(a)));
            format!("[{}]", all.join(", "))
        };
        let mut inv = format!(
            "# Written by `opsctl lab up`: the lab on this machine. Try\n\
             #   opsctl -i {dir}/inventory.yaml restart --no-downtime --all --dry-run\n\
             advertise:\n  backend: values-file\n  file: values.yaml\n  apply: {apply}\n  check:\n    command: {check}\n\
             lock:\n  dir: {dir}/locks\n\
             defaults:\n  transport: local\n  min_healthy_relays: 1\n  relay:\n    kind: relayd\n    drain:\n      poll: 1s\n      timeout: 2m\n      relay_drain: true\n\
             sites:\n  - name: lab\n    relays:\n",
            apply = cmd(&["apply", "--dir", &dir]),
            check = cmd(&["calls-config", "--dir", &dir]),
        );
        for i in 0..self.relays() {
            let n = name(i);
            inv.push_str(&format!(
                "      - name: {n}\n        host: {ip}\n        urls: ['turn:{ip}:{TURN_PORT}', 'turn:{ip}:{TURN_PORT}?transport=tcp']\n        stats: {{addr: '{ip}:{STATUS_PORT}', read_on: local}}\n        service:\n          stop: {stop}\n          start: {start}\n          restart: {restart}\n          status: {status}\n          status_expect: active\n",
                ip = ip(&self.dir, i),
                stop = cmd(&["service", "--dir", &dir, &n, "stop"]),
                start = cmd(&["service", "--dir", &dir, &n, "start"]),
                restart = cmd(&["service", "--dir", &dir, &n, "restart"]),
                status = cmd(&["service", "--dir", &dir, &n, "status"]),
            ));
        }
        std::fs::write(self.inventory(), inv)?;
        Ok(())
    }

    /// `lab service NODE VERB`: what systemctl is for a real relay.
    /// Whether the relay runs, for `status`; `None` for the other verbs.
    pub fn service(&self, node: &str, verb: &str) -> anyhow::Result<Option<bool>> {
        let i = relays::index(&self.dir, node)?;
        match verb {
            "start" => relays::start(&self.dir, i).map(|_| None),
            "stop" => relays::stop(&self.dir, i).map(|_| None),
            "restart" => {
                relays::stop(&self.dir, i)?;
                relays::start(&self.dir, i).map(|_| None)
            }
            "status" => Ok(Some(relays::pid(&self.dir, i).is_some())),
            other => bail!("unknown service action `{other}`: use start, stop, restart or status"),
        }
    }

    /// `lab calls-config`: what brig's `/calls/config/v2` would answer.
    pub fn calls_config(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.values())?;
        let urls = crate::advertise::listed(&text, crate::inventory::DEFAULT_LIST);
        let body = serde_json::json!({
            "ice_servers": [{ "urls": urls, "username": "lab", "credential": "lab" }],
            "ttl": 3600,
        });
        Ok(serde_json::to_string(&body)?)
    }
}
