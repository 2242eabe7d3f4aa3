//! Benchmark: `opsctl status` over 50 lab nodes (real sshd on loopback), cold
//! (a new SSH connection per node) and warm (masters kept by --ssh-persist),
//! against Ansible's ad-hoc `shell` module doing the same reads over the same
//! inventory and keys with `--forks 50`.
//!
//!     cargo bench -p opsctl --bench status            # needs root, sshd, ansible
//!
//! Relays are not in the lab yet, so every node's stats command is an `echo`
//! of an rtpengine reply: the benchmark measures opsctl's fan-out (connect,
//! then two commands per node), which is where the time goes.

#[path = "../../tests/lab/mod.rs"]
#[allow(dead_code)]
mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

const NODES: usize = 50;
const RUNS: usize = 5;

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len() as u32
}

fn time(runs: usize, mut f: impl FnMut() -> bool) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            assert!(f(), "a benchmarked command failed");
            t.elapsed()
        })
        .collect()
}

fn main() {
    let lab = lab::Lab::start(NODES).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    for i in 0..NODES {
        lab.service(i, "rtpengine-daemon", "sleep 3600");
        assert!(lab.systemctl(i, "start rtpengine-daemon").status.success());
    }
    let dir = lab.dir.join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let stats = ", stats: {command: [echo, 'Current sessions total: 0']}";
    std::fs::write(dir.join("inventory.yaml"), lab.inventory("rtpengine", stats)).unwrap();
    let opsctl = std::path::Path::new(env!("CARGO_BIN_EXE_opsctl"));
    let status = |persist: &str| {
        let out = Command::new(opsctl)
            .current_dir(&dir)
            .args(["status", "--forks", "50"])
            .env("OPSCTL_SSH_PERSIST", persist)
            .env("OPSCTL_CONTROL_DIR", dir.join("ctl"))
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    };
    // The floor for a cold read: 50 plain `ssh node true` at once, one key
    // exchange each (OpenSSH's default, post-quantum hybrid KEX).
    let plain = time(RUNS, || {
        let children: Vec<_> = (0..NODES)
            .map(|i| lab.ssh_command(i, "true").spawn().unwrap())
            .collect();
        children.into_iter().all(|mut c| c.wait().unwrap().success())
    });
    println!(
        "plain parallel ssh, {NODES} nodes: mean {:?} over {RUNS} runs",
        mean(&plain)
    );
    let cold = time(RUNS, || status("0s"));
    assert!(status("5m"), "warm-up");
    let warm = time(RUNS, || status("5m"));
    println!(
        "opsctl status, {NODES} nodes, cold (new connections): mean {:?} over {RUNS} runs {cold:?}",
        mean(&cold)
    );
    println!(
        "opsctl status, {NODES} nodes, warm (kept masters):    mean {:?} over {RUNS} runs {warm:?}",
        mean(&warm)
    );

    let mut hosts = String::from("[lab]\n");
    for n in &lab.nodes {
        hosts.push_str(&format!("{} ansible_host={} ansible_port=2022\n", n.name, n.ip));
    }
    hosts.push_str(&format!(
        "[lab:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_python_interpreter=/usr/bin/python3\nansible_ssh_common_args='-o UserKnownHostsFile={}'\n",
        lab.client_key.display(),
        lab.known_hosts.display()
    ));
    std::fs::write(dir.join("hosts.ini"), hosts).unwrap();
    let ansible = || {
        let out = Command::new("ansible")
            .current_dir(&dir)
            .args(["lab", "-i", "hosts.ini", "--forks", "50", "-m", "shell", "-a"])
            .arg("systemctl is-active rtpengine-daemon; echo 'Current sessions total: 0'")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("ansible-cp"))
            .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
            .output();
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                eprintln!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                false
            }
            Err(e) => panic!("ansible is not installed (`pip install ansible-core`): {e}"),
        }
    };
    let a_cold = time(1, ansible);
    let a_warm = time(RUNS, ansible);
    println!(
        "ansible shell, {NODES} nodes, --forks 50, first run:      {:?}",
        a_cold[0]
    );
    println!(
        "ansible shell, {NODES} nodes, --forks 50, warm (ControlPersist 60s): mean {:?} over {RUNS} runs",
        mean(&a_warm)
    );
    println!(
        "speed-up: cold {:.1}x, warm {:.1}x",
        a_cold[0].as_secs_f64() / mean(&cold).as_secs_f64(),
        mean(&a_warm).as_secs_f64() / mean(&warm).as_secs_f64()
    );
}
