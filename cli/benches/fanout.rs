//! Benchmark: the fan-out of `opsctl status` beside today's tools, on N lab
//! nodes (real sshd on loopback, each running relayd as its relay), in one
//! run, every tool interleaved, REPS rounds, medians.
//!
//!     scripts/bench/fanout [N ...]       # makes the venv, builds, runs this
//!
//! Every tool does the same remote work: what `opsctl status` sends each
//! node (its service state, its stats, its drain state, in one command) is
//! captured from the node's own record of what it ran and written to the
//! node as `status.sh`; the other tools run `sh "$LAB_NODE/status.sh"`.
//! Each run is verified: every node answered every read (opsctl: every row
//! up; the others: every read's exit status 0 in the output).
//!
//! - ssh cold: `ssh` to every node at once (`xargs -P N ssh` without xargs),
//!   one key exchange each with OpenSSH's defaults.
//! - ssh warm: the same over ControlMaster sockets opened beforehand.
//! - opsctl cold: `opsctl status --forks N`, new connections.
//! - opsctl warm: the same with `--ssh-persist`, masters kept by a first run.
//! - pyinfra: `pyinfra --parallel N INVENTORY exec`, new connections (it
//!   keeps none between runs).
//! - Ansible raw and shell: `ansible -m raw|shell --forks N`, over its own
//!   ControlPersist masters (opened by an untimed first run, kept 10 min).
//!
//! Client CPU is every CPU second of the tool's processes, their children
//! and the ssh masters they leave (a cgroup per tool), not the servers'.
//! The venv with pyinfra and Ansible is on PATH (the script puts it there);
//! a tool that is missing is left out and said so.

#[path = "../../tests/lab/mod.rs"]
#[allow(dead_code)]
mod lab;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// CPU time of everything a tool starts, in a cgroup of its own (v2, or
/// v1's cpuacct); without cgroups, the waited-for children's time only.
struct Cpu {
    dir: Option<PathBuf>,
    v2: bool,
}

impl Cpu {
    fn root() -> (PathBuf, bool) {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if v2 {
            (PathBuf::from("/sys/fs/cgroup"), true)
        } else {
            (PathBuf::from("/sys/fs/cgroup/cpuacct"), false)
        }
    }

    fn new(name: &str) -> Cpu {
        let (root, v2) = Cpu::root();
        let dir = root.join(format!("opsctl-bench-{}-{name}", std::process::id()));
        let dir = std::fs::create_dir(&dir).ok().map(|()| dir);
        Cpu { dir, v2 }
    }

    /// Moves this process into the cgroup (what it starts from now on goes
    /// there too), or back out to the root with `None`.
    fn move_self(to: Option<&Cpu>) -> bool {
        let dir = match to {
            Some(c) => match &c.dir {
                Some(d) => d.clone(),
                None => return false,
            },
            None => Cpu::root().0,
        };
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).is_ok()
    }

    /// Puts the process `c` starts into this cgroup before it runs.
    fn enter(&self, c: &mut Command) {
        let Some(dir) = &self.dir else { return };
        let Ok(procs) = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        else {
            return;
        };
        // SAFETY: the closure only writes to a file opened before the fork;
        // it allocates nothing. "0" moves the writing process itself.
        unsafe {
            c.pre_exec(move || (&procs).write_all(b"0"));
        }
    }

    /// CPU seconds used so far by this cgroup's processes.
    fn used(&self) -> f64 {
        match &self.dir {
            Some(d) if self.v2 => std::fs::read_to_string(d.join("cpu.stat"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
                .map_or(0.0, |us| us / 1e6),
            Some(d) => std::fs::read_to_string(d.join("cpuacct.usage"))
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map_or(0.0, |ns| ns / 1e9),
            None => children_cpu(),
        }
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            // What the tool left running (its kept ssh masters) is stopped by pid.
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            let me = std::process::id().to_string();
            let pids: Vec<&str> = procs.split_whitespace().filter(|p| *p != me).collect();
            if !pids.is_empty() {
                let _ = Command::new("kill").args(&pids).status();
            }
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("fanout: cannot remove the cgroup {}", d.display());
        }
    }
}

/// The CPU seconds of this process's waited-for children (`/proc/self/stat`).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, cutime 16 and cstime 17 (1-based).
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(16) + ticks(17)) / 100.0
}

/// One timed run of a tool: wall seconds, its CPU seconds, and the lab
/// nodes' (sshd, the shells and commands it ran, the relays) meanwhile.
struct Sample {
    wall: f64,
    cpu: f64,
    server: f64,
}

/// One timed run of a tool; `Err` says what did not answer.
type Run<'a> = dyn Fn(&Cpu) -> Result<(), String> + 'a;

/// Each tool's medians: wall, client CPU and server CPU seconds.
type Medians = BTreeMap<&'static str, (f64, f64, f64)>;

/// The ratios the targets are stated in, each the median of its rounds'
/// own ratios (interleaved rounds pair each tool's run with the other's).
const RATIOS: [(&str, &str, &str); 3] = [
    ("warm / ssh warm", "opsctl warm", "ssh warm"),
    ("cold / ssh cold", "opsctl cold", "ssh cold"),
    ("pyinfra / warm", "pyinfra", "opsctl warm"),
];

struct Measured {
    medians: Medians,
    ratios: Vec<Option<f64>>,
}

struct Tool<'a> {
    name: &'static str,
    cpu: Cpu,
    run: Box<Run<'a>>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `c` in `cpu`'s cgroup to its end; its output, or why it failed.
fn output(cpu: &Cpu, mut c: Command) -> Result<String, String> {
    cpu.enter(&mut c);
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{c:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{:?} exited {}: {text}", c.get_program(), out.status))
    }
}

/// Every read of every node ended with status 0, as the marks in the output say.
fn all_answered(text: &str, reads: usize) -> Result<(), String> {
    let ok = text
        .match_indices("@@opsctl-")
        .filter(|(i, _)| {
            let rest = &text[i + 9..];
            rest.len() > 18
                && rest[..16].bytes().all(|b| b.is_ascii_hexdigit())
                && rest[16..].starts_with(" 0")
                && !rest[18..].starts_with(|c: char| c.is_ascii_digit())
        })
        .count();
    if ok == reads {
        Ok(())
    } else {
        let tail: String = text
            .chars()
            .rev()
            .take(1500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!("{ok} of {reads} reads answered with status 0\n...{tail}"))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

fn main() {
    let mut counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("fanout: node counts are numbers, not `{a}`"))
        })
        .collect();
    if counts.is_empty() {
        counts = vec![10, 50, 200];
    }
    counts.sort_unstable();
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let max = *counts.last().unwrap();
    eprintln!("fanout: starting {max} lab nodes, each with relayd...");
    // Every process of the lab in one cgroup of its own: the server side's CPU.
    let nodes = Cpu::new("nodes");
    let counted = Cpu::move_self(Some(&nodes));
    let lab = lab::Lab::start(max).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    for i in 0..max {
        lab.relayd(i, "relayd");
    }
    // Started from each node's own shell, a few at a time.
    let all: Vec<usize> = (0..max).collect();
    std::thread::scope(|s| {
        for chunk in all.chunks(max.div_ceil(8)) {
            let lab = &lab;
            s.spawn(move || {
                for &i in chunk {
                    let out = lab.systemctl(i, "start relayd");
                    assert!(out.status.success(), "node-{}: {out:?}", i + 1);
                }
            });
        }
    });
    if counted && !Cpu::move_self(None) {
        panic!("fanout: cannot leave the lab's cgroup");
    }
    let opsctl = PathBuf::from(env!("CARGO_BIN_EXE_opsctl"));
    let have_pyinfra = on_path("pyinfra");
    let have_ansible = on_path("ansible");
    for (tool, there) in [("pyinfra", have_pyinfra), ("ansible", have_ansible)] {
        if !there {
            eprintln!(
                "fanout: {tool} is not on PATH; it is left out (scripts/bench/fanout installs it in a venv)"
            );
        }
    }
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name\t: ").map(str::to_owned))
        })
        .unwrap_or_default();
    let ssh_version = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    println!(
        "fan-out on {} cores ({machine}), {ssh_version}; median of {reps} interleaved rounds, wall seconds (client CPU seconds / the nodes' CPU seconds)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut table: Vec<(usize, Measured)> = Vec::new();
    for &n in &counts {
        let results = measure(&lab, &nodes, &opsctl, n, reps, have_pyinfra, have_ansible);
        print_row(n, &results);
        table.push((n, results));
    }
    println!();
    print_table(&table);
}

fn measure(
    lab: &lab::Lab,
    nodes: &Cpu,
    opsctl: &Path,
    n: usize,
    reps: usize,
    pyinfra: bool,
    ansible: bool,
) -> Measured {
    let dir = lab.dir.join(format!("bench-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut inv = lab.inventory("relayd", "");
    for node in &lab.nodes {
        // Each relay's status port on its node's own address.
        inv = inv.replace(
            &format!("host: {}}}", node.ip),
            &format!("host: {}, stats: {{addr: '{}:33000'}}}}", node.ip, node.ip),
        );
    }
    let keep: Vec<String> = inv
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("- {name: node-")
                || l.split("node-")
                    .nth(1)
                    .and_then(|r| r.split(',').next()?.parse::<usize>().ok())
                    <= Some(n)
        })
        .map(str::to_owned)
        .collect();
    inv = keep.join("\n") + "\n";
    std::fs::write(dir.join("inventory.yaml"), &inv).unwrap();

    // What opsctl status sends each node, as the node recorded it.
    for i in 0..n {
        lab.commands_run(i);
    }
    let forks = n.to_string();
    let status = |persist: &str, ctl: &str| {
        let mut c = Command::new(opsctl);
        c.current_dir(&dir)
            .args(["status", "--forks", &forks])
            .env("OPSCTL_SSH_PERSIST", persist)
            .env("OPSCTL_CONTROL_DIR", dir.join(ctl))
            .env("OPSCTL_STATE_DIR", dir.join("state"))
            .env("NO_COLOR", "1");
        c
    };
    let probe = Cpu::new("probe");
    let first = output(&probe, status("0s", "ctl-probe")).unwrap_or_else(|e| panic!("opsctl status: {e}"));
    drop(probe);
    let reads = 3;
    for i in 0..n {
        let sent = lab.commands_run(i);
        assert_eq!(
            sent.len(),
            1,
            "node-{}: opsctl status sent {sent:#?}\n{first}",
            i + 1
        );
        std::fs::write(lab.nodes[i].dir.join("status.sh"), &sent[0]).unwrap();
    }
    let verify_rows = move |text: &str| {
        let up = text
            .lines()
            .filter(|l| l.contains(" relayd ") && l.contains("  up  "))
            .count();
        if up == n {
            Ok(())
        } else {
            Err(format!("{up} of {n} relays up:\n{text}"))
        }
    };

    let mut tools: Vec<Tool> = Vec::new();
    let ssh_args = |i: usize, extra: &[String]| lab.ssh_to(i, extra);
    let parallel_ssh = move |cpu: &Cpu, extra: Vec<String>| -> Result<(), String> {
        let children: Vec<_> = (0..n)
            .map(|i| {
                let mut c = ssh_args(i, &extra);
                c.arg("sh \"$LAB_NODE/status.sh\"")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                cpu.enter(&mut c);
                c.spawn().map_err(|e| format!("ssh: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let mut text = String::new();
        for c in children {
            let out = c.wait_with_output().map_err(|e| e.to_string())?;
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                return Err(format!(
                    "ssh exited {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        all_answered(&text, n * reads)
    };
    let cold: Vec<String> = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        .map(String::from)
        .to_vec();
    let cm = dir.join("cm");
    std::fs::create_dir_all(&cm).unwrap();
    let warm: Vec<String> = vec![
        "-o".into(),
        "ControlMaster=no".into(),
        "-o".into(),
        format!("ControlPath={}/%C", cm.display()),
    ];
    {
        let pssh = parallel_ssh;
        tools.push(Tool {
            name: "ssh cold",
            cpu: Cpu::new("ssh-cold"),
            run: Box::new(move |cpu| pssh(cpu, cold.clone())),
        });
    }
    // The warm sockets: one master per node, opened before any timing.
    let ssh_warm_cpu = Cpu::new("ssh-warm");
    let masters: Vec<_> = (0..n)
        .map(|i| {
            let mut c = ssh_args(
                i,
                &[
                    "-M".into(),
                    "-N".into(),
                    "-f".into(),
                    "-o".into(),
                    "ControlPersist=10m".into(),
                    "-o".into(),
                    format!("ControlPath={}/%C", cm.display()),
                ],
            );
            c.stdin(Stdio::null());
            ssh_warm_cpu.enter(&mut c);
            c.spawn().unwrap()
        })
        .collect();
    for mut m in masters {
        assert!(m.wait().unwrap().success(), "an ssh master did not start");
    }
    {
        let pssh = parallel_ssh;
        tools.push(Tool {
            name: "ssh warm",
            cpu: ssh_warm_cpu,
            run: Box::new(move |cpu| pssh(cpu, warm.clone())),
        });
    }
    {
        let (status, verify) = (status, verify_rows);
        let dir = dir.clone();
        tools.push(Tool {
            name: "opsctl cold",
            cpu: Cpu::new("opsctl-cold"),
            run: Box::new(move |cpu| {
                let _ = std::fs::remove_dir_all(dir.join("ctl-cold"));
                verify(&output(cpu, status("0s", "ctl-cold"))?)
            }),
        });
    }
    {
        let warm_cpu = Cpu::new("opsctl-warm");
        output(&warm_cpu, status("10m", "ctl-warm")).unwrap_or_else(|e| panic!("opsctl warm-up: {e}"));
        tools.push(Tool {
            name: "opsctl warm",
            cpu: warm_cpu,
            run: Box::new(move |cpu| verify_rows(&output(cpu, status("10m", "ctl-warm"))?)),
        });
    }
    if pyinfra {
        let mut hosts = String::from("lab = [\n");
        for node in &lab.nodes[..n] {
            hosts.push_str(&format!(
                "    ({:?}, {{\"ssh_port\": 2022, \"ssh_user\": \"root\", \"ssh_key\": {:?}, \"ssh_known_hosts_file\": {:?}, \"ssh_strict_host_key_checking\": \"yes\"}}),\n",
                node.ip.to_string(),
                lab.client_key.display().to_string(),
                lab.known_hosts.display().to_string()
            ));
        }
        hosts.push_str("]\n");
        std::fs::write(dir.join("pyinfra_inventory.py"), hosts).unwrap();
        let dir = dir.clone();
        let forks = forks.clone();
        tools.push(Tool {
            name: "pyinfra",
            cpu: Cpu::new("pyinfra"),
            run: Box::new(move |cpu| {
                let mut c = Command::new("pyinfra");
                c.current_dir(&dir)
                    .args(["-y", "--parallel", &forks, "pyinfra_inventory.py", "exec", "--"])
                    .arg("sh \"$LAB_NODE/status.sh\"");
                all_answered(&output(cpu, c)?, n * reads)
            }),
        });
    }
    if ansible {
        let mut hosts = String::from("[lab]\n");
        for node in &lab.nodes[..n] {
            hosts.push_str(&format!(
                "{} ansible_host={} ansible_port=2022\n",
                node.name, node.ip
            ));
        }
        hosts.push_str(&format!(
            "[lab:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_python_interpreter=/usr/bin/python3\n",
            lab.client_key.display()
        ));
        std::fs::write(dir.join("hosts.ini"), hosts).unwrap();
        for (name, module) in [("ansible raw", "raw"), ("ansible shell", "shell")] {
            let (dir, forks) = (dir.clone(), forks.clone());
            let known = lab.known_hosts.clone();
            let run = move |cpu: &Cpu| {
                let mut c = Command::new("ansible");
                c.current_dir(&dir)
                    .args(["lab", "-i", "hosts.ini", "--forks", &forks, "-m", module, "-a"])
                    .arg("sh \"$LAB_NODE/status.sh\"")
                    .env("ANSIBLE_HOST_KEY_CHECKING", "True")
                    .env(
                        "ANSIBLE_SSH_ARGS",
                        format!(
                            "-o ControlMaster=auto -o ControlPersist=10m -o UserKnownHostsFile={}",
                            known.display()
                        ),
                    )
                    .env(
                        "ANSIBLE_SSH_CONTROL_PATH_DIR",
                        dir.join(format!("ansible-cp-{module}")),
                    )
                    .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
                    .env("ANSIBLE_HOME", dir.join("ansible-home"))
                    .env("ANSIBLE_NOCOLOR", "1");
                all_answered(&output(cpu, c)?, n * reads)
            };
            let cpu = Cpu::new(&format!("ansible-{module}"));
            // Its masters, opened by an untimed first run.
            run(&cpu).unwrap_or_else(|e| panic!("{name} warm-up: {e}"));
            tools.push(Tool {
                name,
                cpu,
                run: Box::new(run),
            });
        }
    }

    let mut samples: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    for round in 0..reps {
        for t in &tools {
            let (cpu0, server0) = (t.cpu.used(), nodes.used());
            let started = Instant::now();
            if let Err(e) = (t.run)(&t.cpu) {
                panic!("{} on {n} nodes, round {}: {e}", t.name, round + 1);
            }
            let wall = started.elapsed().as_secs_f64();
            // Masters a cold run closes may still be exiting: let them finish.
            std::thread::sleep(Duration::from_millis(300));
            let (cpu, server) = (t.cpu.used() - cpu0, nodes.used() - server0);
            eprintln!(
                "fanout: N={n} round {} {:<13} {wall:.3} s, cpu {cpu:.2} s, nodes {server:.2} s",
                round + 1,
                t.name
            );
            samples
                .entry(t.name)
                .or_default()
                .push(Sample { wall, cpu, server });
        }
    }
    let ratios = RATIOS
        .iter()
        .map(|(_, a, b)| {
            let (a, b) = (samples.get(a)?, samples.get(b)?);
            let per_round: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.wall / y.wall).collect();
            Some(median(per_round))
        })
        .collect();
    let medians = samples
        .into_iter()
        .map(|(k, v)| {
            let m = |f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
            (k, (m(|s| s.wall), m(|s| s.cpu), m(|s| s.server)))
        })
        .collect();
    Measured { medians, ratios }
}

const COLUMNS: [&str; 7] = [
    "ssh cold",
    "ssh warm",
    "pyinfra",
    "ansible raw",
    "ansible shell",
    "opsctl cold",
    "opsctl warm",
];

fn print_row(n: usize, r: &Measured) {
    let cells: Vec<String> = COLUMNS
        .iter()
        .map(|c| match r.medians.get(c) {
            Some((w, cpu, server)) => format!("{c} {w:.3} ({cpu:.2} / {server:.2})"),
            None => format!("{c} -"),
        })
        .collect();
    println!("N={n}: {}", cells.join(", "));
}

fn print_table(rows: &[(usize, Measured)]) {
    let names: Vec<&str> = RATIOS.iter().map(|(name, _, _)| *name).collect();
    println!("| N | {} | {} |", COLUMNS.join(" | "), names.join(" | "));
    println!("|---|{}{}", "---|".repeat(7), "---|".repeat(RATIOS.len()));
    for (n, r) in rows {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|c| match r.medians.get(c) {
                Some((w, cpu, server)) => format!("{w:.3} ({cpu:.2} / {server:.1})"),
                None => "-".into(),
            })
            .collect();
        let ratios: Vec<String> = r
            .ratios
            .iter()
            .map(|x| x.map_or("-".into(), |x| format!("{x:.2}x")))
            .collect();
        println!("| {n} | {} | {} |", cells.join(" | "), ratios.join(" | "));
    }
}
