//! `opsctl lab`: up, down, status, and the demo.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::args::LabCmd;
use crate::config::Config;
use crate::executor;
use crate::inventory;
use crate::lab::relays::{self, RELAYS, name};
use crate::lab::{Lab, simulator};
use crate::plan::{self, Procedure, Request};
use crate::printer::Printer;

pub fn run(cfg: &Config, cmd: &LabCmd) -> anyhow::Result<()> {
    let out = &cfg.printer;
    match cmd.clone() {
        LabCmd::Up(up) => {
            let d = &up.dir;
            let lab = Lab::new(&d.dir)?;
            lab.up(up.relays, Some((up.calls, up.call_length)))?;
            out.say(&format!(
                "lab is up: {} relays on {} to {}, calls going on\n  inventory: {}\n  try: opsctl -i {} status\n  stop: opsctl lab down --dir {}",
                up.relays,
                relays::ip(&lab.dir, 0),
                relays::ip(&lab.dir, up.relays - 1),
                lab.inventory().display(),
                lab.inventory().display(),
                d.dir.display()
            ));
            Ok(())
        }
        LabCmd::Down(d) => Lab::new(&d.dir)?.down(),
        LabCmd::Status(d) => {
            let lab = Lab::new(&d.dir)?;
            if !lab.inventory().exists() {
                bail!(
                    "no lab in {}\nhelp: start one with `opsctl lab up --dir {}`",
                    d.dir.display(),
                    d.dir.display()
                );
            }
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg("--inventory")
                .arg(lab.inventory())
                .arg("status")
                .status()?;
            if status.success() {
                Ok(())
            } else {
                bail!("some lab nodes are unhealthy")
            }
        }
        LabCmd::Demo(d) => demo(&d.dir, cfg),
        LabCmd::Relayd { args } => {
            use clap::Parser;
            let args = relay::daemon::Args::parse_from(std::iter::once("relayd".to_owned()).chain(args));
            let code = relay::daemon::main_from(args);
            if code == std::process::ExitCode::SUCCESS {
                Ok(())
            } else {
                bail!("relayd stopped with an error")
            }
        }
        LabCmd::Service { dir, node, action } => match Lab::new(&dir.dir)?.service(&node, &action)? {
            // `status` answers as systemctl does: a word, and exit 3 when down.
            Some(true) => {
                out.text("active\n");
                Ok(())
            }
            Some(false) => {
                out.text("inactive\n");
                std::process::exit(3)
            }
            None => Ok(()),
        },
        LabCmd::Simulate {
            dir,
            concurrent,
            call_length,
            max_runtime,
            user,
            password,
        } => {
            let lab = Lab::new(&dir.dir)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(simulator::run(simulator::Settings {
                dir: lab.dir,
                concurrent,
                call_length,
                max_runtime,
                user: user.unwrap_or_else(|| relays::USER.to_owned()),
                password: password.unwrap_or_else(|| relays::PASSWORD.to_owned()),
            }))
        }
        LabCmd::Apply(d) => {
            let lab = Lab::new(&d.dir)?;
            let listed = simulator::advertised(&lab.values());
            out.text(&format!(
                "clients now get: {}\n",
                listed
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            Ok(())
        }
        LabCmd::CallsConfig(d) => {
            out.text(&format!("{}\n", Lab::new(&d.dir)?.calls_config()?));
            Ok(())
        }
    }
}

/// Stops the lab however the demo ends: success, failure, or Ctrl-C.
struct Down<'a>(&'a Lab, &'a Printer);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            self.1.say(&format!("opsctl: error: stopping the lab: {e:#}"));
        }
    }
}

fn demo(dir: &std::path::Path, cfg: &Config) -> anyhow::Result<()> {
    let out = &cfg.printer;
    let started = Instant::now();
    let lab = Lab::new(dir)?;
    // Ctrl-C before the rollout starts must still stop the lab: catch it.
    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let flag = interrupted.clone();
    watcher.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    lab.down()?;
    let _ = std::fs::remove_file(lab.values());
    let _down = Down(&lab, out);
    out.say(&format!(
        "lab: starting {RELAYS} relays and calls that come and go ({})",
        lab.dir.display()
    ));
    lab.up(RELAYS, Some((simulator::CONCURRENT, simulator::CALL_LENGTH)))?;
    // Let calls get going on every relay.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before the rollout; the lab is stopped");
        }
        let c = simulator::read_counts(&lab.dir).unwrap_or_default();
        if c.active >= 4 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the call simulator did not get calls going within 15s; see {}",
                lab.dir.join("log/simulator.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let values_before = std::fs::read(lab.values())?;
    let pids_before: Vec<Option<u32>> = (0..RELAYS).map(|i| relays::pid(&lab.dir, i)).collect();
    let calls_before = simulator::read_counts(&lab.dir).unwrap_or_default();

    let inv = inventory::load(&lab.inventory())?;
    let run = format!("lab-demo-{}", crate::journal::now());
    let plan = plan::build(
        &inv,
        &Request {
            procedure: Procedure::RestartNoDowntime,
            targets: inv.relays().map(|r| r.name.clone()).collect(),
            run,
            left_out: BTreeMap::new(),
            force: false,
            handover: BTreeMap::new(),
            handover_reads: Vec::new(),
            versions: BTreeMap::new(),
        },
    )?;
    out.say(&format!(
        "lab: `opsctl restart --no-downtime --all` on the lab, with {} calls going on\n",
        calls_before.active
    ));
    let options = executor::Options {
        forks: 32,
        state_dir: lab.dir.join("state"),
        inventory_id: lab.inventory().display().to_string(),
        yes: true,
        printer: cfg.printer.clone(),
        control_dir: lab.dir.join("ssh"),
        ssh_persist: None,
        resume: None,
        break_lock: false,
        notify: cfg.notify.clone(),
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let stop = executor::Stop::default();
            stop.on_ctrl_c(cfg.printer.clone());
            executor::run(&plan, options, stop).await
        });
    // Calls that were going on finish before the count.
    std::thread::sleep(Duration::from_millis(500));
    let calls_after = simulator::read_counts(&lab.dir).unwrap_or_default();
    let pids_after: Vec<Option<u32>> = (0..RELAYS).map(|i| relays::pid(&lab.dir, i)).collect();
    let values_after = std::fs::read(lab.values())?;
    outcome.context("the rolling restart did not finish")?;

    let mut ok = true;
    out.text("\n");
    for i in 0..RELAYS {
        let (b, a) = (pids_before[i], pids_after[i]);
        let restarted = b.is_some() && a.is_some() && b != a;
        ok &= restarted;
        out.text(&format!(
            "proof: {} restarted: pid {} -> {}{}\n",
            name(i),
            b.map_or("-".into(), |p| p.to_string()),
            a.map_or("-".into(), |p| p.to_string()),
            if restarted { "" } else { "  <- NOT restarted" }
        ));
    }
    let completed = calls_after.completed - calls_before.completed;
    let dropped = calls_after.dropped - calls_before.dropped;
    let not_started = calls_after.not_started - calls_before.not_started;
    ok &= dropped == 0 && completed > 0;
    out.text(&format!(
        "proof: calls during the rollout: {completed} completed, {dropped} dropped, {not_started} could not start\n"
    ));
    for why in calls_after.drops.iter().skip(calls_before.drops.len()) {
        out.text(&format!("       dropped: {why}\n"));
    }
    let same = values_before == values_after;
    ok &= same;
    out.text(&format!(
        "proof: values.yaml back as it was, byte for byte: {}\n",
        if same { "yes" } else { "NO" }
    ));
    out.text(&format!(
        "lab demo finished in {}s\n",
        started.elapsed().as_secs()
    ));
    if !ok {
        bail!("the demo's proof does not hold (see above)");
    }
    Ok(())
}
