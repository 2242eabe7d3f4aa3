//! The lab: real `sshd` nodes on loopback addresses, each with its own host
//! key, state directory and shims for host actions (`systemctl`) that act on
//! that node's own processes. Everything a lab starts it stops by pid, and its
//! files are removed, when it is dropped, also when a test fails.
//!
//! Lab nodes need root (sshd logs in as root) and Debian's openssh-server;
//! `scripts/test.sh` installs it. Each node's sshd runs in its own mount and
//! pid namespace: root's `.bashrc` is masked there so commands get a clean,
//! fast shell, and stopping the node's sshd ends every process the node
//! started, however it was left.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const PORT: u16 = 2022;

pub struct Lab {
    pub dir: PathBuf,
    pub nodes: Vec<LabNode>,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    /// Each node's root is its own ([`Lab::start_clean`]).
    clean: bool,
}

pub struct LabNode {
    pub name: String,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    sshd: Option<Child>,
}

/// Why a lab could not be had; a lab test fails with this, it is never skipped.
pub fn requirements() -> Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err(format!(
            "{SSHD} is missing: install openssh-server (scripts/test.sh does)"
        ));
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("lab nodes run sshd logging in as root: run the lab tests as root".into());
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn keygen(path: &Path) -> Result<(), String> {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "opsctl-lab", "-f"])
        .arg(path))
}

/// A loopback address of its own for each node: the second octet from the
/// process id, the rest from a counter, so parallel tests never collide.
fn next_ip() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        100 + (pid % 100) as u8,
        ((pid / 100) % 200) as u8 + (n / 250) as u8,
        (n % 250) as u8 + 1,
    )
}

impl Lab {
    /// Starts `n` nodes named `node-1` .. `node-n`.
    pub fn start(n: usize) -> Result<Lab, String> {
        Lab::start_nodes(n, false)
    }

    /// [`Lab::start`] with nodes whose root is their own: an overlay of this
    /// machine's, so what a node installs stays on it and ends with it.
    pub fn start_clean(n: usize) -> Result<Lab, String> {
        Lab::start_nodes(n, true)
    }

    fn start_nodes(n: usize, clean: bool) -> Result<Lab, String> {
        requirements()?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let dir = std::env::temp_dir().join(format!("opsctl-lab-{}-{}", std::process::id(), next_ip()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut lab = Lab {
            client_key: dir.join("client_key"),
            known_hosts: dir.join("known_hosts"),
            dir,
            nodes: Vec::new(),
            clean,
        };
        keygen(&lab.client_key)?;
        std::fs::write(lab.dir.join("empty"), "").map_err(|e| e.to_string())?;
        let mut known = String::new();
        for i in 1..=n {
            let node = lab.add_node(&format!("node-{i}"))?;
            let key = std::fs::read_to_string(node.dir.join("host_key.pub")).map_err(|e| e.to_string())?;
            let key: Vec<&str> = key.split_whitespace().take(2).collect();
            known.push_str(&format!("[{}]:{PORT} {}\n", node.ip, key.join(" ")));
            lab.nodes.push(node);
        }
        std::fs::write(&lab.known_hosts, known).map_err(|e| e.to_string())?;
        for i in 0..lab.nodes.len() {
            lab.start_sshd(i)?;
        }
        Ok(lab)
    }

    fn add_node(&self, name: &str) -> Result<LabNode, String> {
        let ip = next_ip();
        let dir = self.dir.join(name);
        for sub in ["bin", "services", "run", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        keygen(&dir.join("host_key"))?;
        std::fs::copy(
            format!("{}.pub", self.client_key.display()),
            dir.join("authorized_keys"),
        )
        .map_err(|e| e.to_string())?;
        let shims = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lab/shims");
        for entry in std::fs::read_dir(&shims).map_err(|e| format!("{}: {e}", shims.display()))? {
            let p = entry.map_err(|e| e.to_string())?.path();
            std::fs::copy(&p, dir.join("bin").join(p.file_name().unwrap())).map_err(|e| e.to_string())?;
        }
        let d = dir.display();
        let config = format!(
            "ListenAddress {ip}:{PORT}\nHostKey {d}/host_key\nPidFile {d}/run/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             MaxSessions 200\nMaxStartups 200\nLogLevel ERROR\n\
             SetEnv PATH={d}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LAB_NODE={d}\n\
             ForceCommand {d}/bin/lab-record\n"
        );
        std::fs::write(dir.join("sshd_config"), config).map_err(|e| e.to_string())?;
        Ok(LabNode {
            name: name.to_owned(),
            ip,
            dir,
            sshd: None,
        })
    }

    /// Starts (or restarts) node `i`'s sshd and waits until it accepts connections.
    pub fn start_sshd(&mut self, i: usize) -> Result<(), String> {
        let empty = self.dir.join("empty");
        let node = &mut self.nodes[i];
        if node.sshd.is_some() {
            return Ok(());
        }
        // The node's init (tests/lab/node-init.sh) is pid 1 of the node's own
        // pid namespace (killing it ends every process of the node) in a
        // private mount namespace; it boots the node (a boot id, sshd, the
        // services to bring back) and reboots it when asked.
        let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lab/node-init.sh");
        let script = format!(
            "exec sh {} {} {SSHD} {}",
            init.display(),
            node.dir.display(),
            empty.display()
        );
        let log = std::fs::File::create(node.dir.join("log/sshd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .env("LAB_CLEAN", if self.clean { "1" } else { "" })
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start sshd for {}: {e}", node.name))?;
        node.sshd = Some(child);
        let addr = SocketAddr::from((node.ip, PORT));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = node.sshd.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(node.dir.join("log/sshd.log")).unwrap_or_default();
                node.sshd = None;
                return Err(format!("sshd for {} exited ({status}): {log}", node.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "sshd for {} did not listen on {addr} within 10s",
            node.name
        ))
    }

    /// Stops node `i` (sshd and everything it started), as if the host were
    /// down; returns once its port no longer answers (the node's processes
    /// end after its init), so a start that follows waits for the new sshd.
    pub fn stop_sshd(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.until_sshd_gone(i);
        }
    }

    /// Waits (5 s at most) until node `i`'s SSH port no longer answers.
    fn until_sshd_gone(&self, i: usize) {
        let addr = SocketAddr::from((self.nodes[i].ip, PORT));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops node `i`'s sshd alone, with every SSH connection to it (the
    /// daemon and its session processes), as when sshd dies or the
    /// network drops: the node's services keep running. [`Lab::start_sshd_again`]
    /// brings it back.
    pub fn stop_sshd_only(&self, i: usize) {
        let init = self.init_pid(i);
        let daemon = children(init)
            .into_iter()
            .find(|p| comm(*p) == "sshd")
            .expect("the node's sshd");
        let mut sessions = Vec::new();
        let mut todo = vec![daemon];
        while let Some(p) = todo.pop() {
            for c in children(p) {
                if comm(c) == "sshd" || comm(c).starts_with("sshd-") {
                    sessions.push(c);
                    todo.push(c);
                }
            }
        }
        for p in std::iter::once(daemon).chain(sessions) {
            let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
        }
        self.until_sshd_gone(i);
    }

    /// Starts node `i`'s sshd again after [`Lab::stop_sshd_only`], inside the
    /// node (it ends with the node); returns once it listens.
    pub fn start_sshd_again(&self, i: usize) {
        let init = self.init_pid(i).to_string();
        let config = self.nodes[i].dir.join("sshd_config");
        let spawned = Command::new("nsenter")
            .args(["-t", &init, "-p", "-m", "--", SSHD, "-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        assert!(spawned.is_ok(), "nsenter: {spawned:?}");
        let addr = SocketAddr::from((self.nodes[i].ip, PORT));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd of node-{} did not come back",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's init (pid 1 of its pid namespace), as this machine sees it.
    fn init_pid(&self, i: usize) -> u32 {
        let unshare = self.nodes[i].sshd.as_ref().expect("node-{i} runs").id();
        children(unshare).into_iter().next().expect("the node's init")
    }

    /// Declares a service on node `i`: `systemctl start UNIT` runs `command`.
    pub fn service(&self, i: usize, unit: &str, command: &str) {
        std::fs::write(self.nodes[i].dir.join("services").join(unit), command).unwrap();
    }

    /// Declares Debian's coturn as node `i`'s `coturn` service: TURN on the
    /// node's address, port 3478, relaying from the node's address, and its
    /// admin CLI on the node's address, port 5766, with `cli_password`.
    pub fn coturn(&self, i: usize, cli_password: &str) {
        self.coturn_from(i, cli_password, "/usr/bin/turnserver");
    }

    /// [`Lab::coturn`] running the coturn at `binary`.
    pub fn coturn_from(&self, i: usize, cli_password: &str, binary: &str) {
        let n = &self.nodes[i];
        let conf = format!(
            "listening-ip={ip}\nlistening-port=3478\nrelay-ip={ip}\nmin-port=49160\nmax-port=49400\n\
             realm=lab.example\nuser=alice:secret\nlt-cred-mech\nallow-loopback-peers\nno-tls\nno-dtls\n\
             cli-ip={ip}\ncli-port=5766\ncli-password={cli_password}\npidfile={d}/run/turnserver.pid\n\
             log-file={d}/log/turnserver.log\nsimple-log\nno-stdout-log\n",
            ip = n.ip,
            d = n.dir.display()
        );
        std::fs::write(n.dir.join("turnserver.conf"), conf).unwrap();
        self.service(
            i,
            "coturn",
            &format!("{binary} -c {}/turnserver.conf", n.dir.display()),
        );
    }

    /// Declares relayd as node `i`'s service `unit`: the same daemon the
    /// `relayd` binary runs (`opsctl lab relayd`), TURN on the node's address,
    /// port 3478, its status port on 33000, and a user `caller` / `pw`.
    pub fn relayd(&self, i: usize, unit: &str) {
        self.relayd_with(i, unit, "");
    }

    /// [`Lab::relayd`] with more of relayd's flags (`{ip}` and `{dir}` are
    /// the node's address and directory).
    pub fn relayd_with(&self, i: usize, unit: &str, extra: &str) {
        let opsctl = env!("CARGO_BIN_EXE_opsctl");
        let (ip, dir) = (
            self.nodes[i].ip.to_string(),
            self.nodes[i].dir.display().to_string(),
        );
        let extra = extra.replace("{ip}", &ip).replace("{dir}", &dir);
        self.service(
            i,
            unit,
            &format!(
                "env RELAYD_USERS=caller=pw {opsctl} lab relayd -- --listen-udp {ip}:3478 --relay-ip {ip} --realm lab --status {ip}:33000 --allow-loopback-peers {extra}"
            ),
        );
    }

    /// Gives node `i`'s coturn a TLS port (5349) serving `chain` with
    /// `key`, in coturn's two files (`turn-cert.pem`, `turn-key.pem` in the
    /// node's directory).
    pub fn coturn_tls(&self, i: usize, chain: &str, key: &str) {
        let n = &self.nodes[i];
        let (cert_path, key_path) = (n.dir.join("turn-cert.pem"), n.dir.join("turn-key.pem"));
        std::fs::write(&cert_path, chain).unwrap();
        std::fs::write(&key_path, key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conf = n.dir.join("turnserver.conf");
        let text = std::fs::read_to_string(&conf).unwrap().replace("no-tls\n", "");
        std::fs::write(
            &conf,
            format!(
                "{text}tls-listening-port=5349\ncert={}\npkey={}\n",
                cert_path.display(),
                key_path.display()
            ),
        )
        .unwrap();
    }

    /// Waits until something accepts TCP connections on node `i`'s `port`.
    pub fn wait_tcp(&self, i: usize, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from((self.nodes[i].ip, port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("nothing listened on {addr} within 10s"))
    }

    /// Runs a command on node `i` over SSH, as the test's own setup step.
    pub fn ssh(&self, i: usize, command: &str) -> std::process::Output {
        self.ssh_command(i, command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The `ssh` command line that runs `command` on node `i` with the lab's
    /// key and known_hosts, strictly checked.
    pub fn ssh_command(&self, i: usize, command: &str) -> Command {
        let mut c = self.ssh_to(i, &[]);
        c.arg(command);
        c
    }

    /// `ssh` to node `i` as [`Lab::ssh_command`] has it, with `options`
    /// before the destination; the command (if any) goes after.
    pub fn ssh_to(&self, i: usize, options: &[String]) -> Command {
        let mut c = Command::new("ssh");
        c.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-p",
            &PORT.to_string(),
            "-i",
        ])
        .arg(&self.client_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .args(options)
        .arg(format!("root@{}", self.nodes[i].ip));
        c
    }

    /// Allocations that stay on node `i`'s coturn until their lifetime ends:
    /// coturn's own client with `clients` clients (each allocating an RTP and
    /// often an RTCP relay), killed before it releases them.
    pub fn coturn_idle_allocations(&self, i: usize, clients: usize) {
        self.idle_allocations(i, clients, "alice", "secret", &[]);
    }

    /// Allocations left on node `i`'s relay (port 3478) by coturn's own
    /// client logging in as `user` (with more of its flags in `extra`, such
    /// as `-c`: no RTCP allocation), killed before it releases them.
    pub fn idle_allocations(&self, i: usize, clients: usize, user: &str, password: &str, extra: &[&str]) {
        let ip = self.nodes[i].ip.to_string();
        let out = Command::new("timeout")
            .args(["3", "turnutils_uclient", "-u", user, "-w", password, "-p", "3478"])
            .args(extra)
            .args([
                "-m",
                &clients.to_string(),
                "-n",
                "50",
                "-z",
                "20",
                "-e",
                &ip,
                "-r",
                "34999",
                &ip,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.code() == Some(124) || out.status.success(),
            "turnutils_uclient: {out:?}"
        );
    }

    /// An inventory of the lab's nodes as coturn relays read through their
    /// admin CLI (password in `$LAB_CLI_PW`), each with `urls` (`{ip}` is the
    /// node's address) and any further settings in `extra`.
    pub fn coturn_inventory(&self, urls: &[&str], extra: &str) -> String {
        let mut inv = self.inventory("coturn", "");
        for n in &self.nodes {
            let urls: Vec<String> = urls
                .iter()
                .map(|u| format!("'{}'", u.replace("{ip}", &n.ip.to_string())))
                .collect();
            inv = inv.replace(
                &format!("host: {}}}", n.ip),
                &format!(
                    "host: {ip}, urls: [{}], stats: {{via: coturn-cli, addr: '{ip}:5766', password_env: LAB_CLI_PW}}{extra}}}",
                    urls.join(", "),
                    ip = n.ip
                ),
            );
        }
        inv
    }

    /// Every command line node `i`'s sshd ran since the last call, in order,
    /// exactly as it arrived; the record starts again empty.
    pub fn commands_run(&self, i: usize) -> Vec<String> {
        let path = self.nodes[i].dir.join("log/commands");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        text.split_terminator('\0').map(str::to_owned).collect()
    }

    /// `systemctl` on node `i` (the node's shim, over SSH).
    pub fn systemctl(&self, i: usize, args: &str) -> std::process::Output {
        self.ssh(i, &format!("systemctl {args}"))
    }

    /// An inventory for the lab: one site, every node a relay of `kind`,
    /// reached over SSH as root with the lab's key and known_hosts.
    pub fn inventory(&self, kind: &str, relay_extra: &str) -> String {
        let mut out = format!(
            "defaults:\n  ssh:\n    user: root\n    port: {PORT}\n    identity_file: {}\n    known_hosts_file: {}\n    connect_timeout: 3s\n  relay:\n    kind: {kind}\nsites:\n  - name: lab\n    relays:\n",
            self.client_key.display(),
            self.known_hosts.display()
        );
        for n in &self.nodes {
            out.push_str(&format!(
                "      - {{name: {}, host: {}{relay_extra}}}\n",
                n.name, n.ip
            ));
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_sshd(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

/// A process's command name.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}
