//! `opsctl runs`: every run this machine's journals tell of, the latest
//! first: what it was, who ran it from where, when, and how it stands.

use std::fmt::Write as _;

use crate::args::Output;
use crate::config::Config;

pub fn list(cfg: &Config) -> anyhow::Result<()> {
    let runs = crate::journal::runs(&cfg.state_dir);
    if cfg.output == Output::Json {
        return cfg.printer.document(&runs);
    }
    if runs.is_empty() {
        cfg.printer
            .text(&format!("no runs: no journal in {}\n", cfg.state_dir.display()));
        return Ok(());
    }
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|r| {
            [
                r.run.clone(),
                r.procedure.clone(),
                r.targets.join(","),
                format!(
                    "{}@{}",
                    if r.user.is_empty() { "?" } else { &r.user },
                    if r.machine.is_empty() { "?" } else { &r.machine }
                ),
                crate::cert::date(r.started as i64),
                r.state.clone(),
                format!("{}/{}", r.steps_done, r.steps_total),
            ]
        })
        .collect();
    let head = ["RUN", "PROCEDURE", "TARGETS", "WHO", "STARTED", "STATE", "STEPS"];
    let width: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(head.map(str::to_owned)).chain(rows) {
        let cells: Vec<String> = row.iter().zip(&width).map(|(c, w)| format!("{c:w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    cfg.printer.text(&out);
    Ok(())
}

/// `opsctl runs show RUN`: one run, step by step, with what its gates read.
pub fn show(cfg: &Config, run: &str) -> anyhow::Result<()> {
    let Some(h) = crate::journal::history(&cfg.state_dir, run) else {
        return Err(crate::error::usage(format!(
            "no run `{run}` in {}\nhelp: `opsctl runs` lists the runs of this state directory (--state-dir)",
            cfg.state_dir.display()
        )));
    };
    if cfg.output == Output::Json {
        return cfg.printer.document(&h);
    }
    let s = &h.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}: {} on {}, by {}@{}, started {}",
        s.run,
        s.procedure,
        s.targets.join(", "),
        if s.user.is_empty() { "?" } else { &s.user },
        if s.machine.is_empty() { "?" } else { &s.machine },
        crate::cert::date(s.started as i64)
    );
    for at in &h.resumed {
        let _ = writeln!(out, "resumed {}", crate::cert::date(*at as i64));
    }
    let _ = writeln!(
        out,
        "state: {}, {} of {} steps done",
        s.state, s.steps_done, s.steps_total
    );
    if !h.message.is_empty() {
        let _ = writeln!(out, "ended: {}", h.message.replace('\n', "\n       "));
    }
    let _ = writeln!(out, "inventory: {}\njournal: {}", h.inventory, s.journal);
    for (node, kept) in &h.records {
        for (name, value) in kept {
            let _ = writeln!(out, "kept on {node}: {name} = {}", value.trim());
        }
    }
    let _ = writeln!(out);
    let clock = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), crate::duration::utc_clock);
    for step in &h.steps {
        let _ = writeln!(
            out,
            "{:>3}. {:<11} {} .. {}  {}: {}",
            step.number,
            step.result,
            clock(step.started),
            clock(step.ended),
            step.node,
            step.title
        );
        for r in &step.readings {
            let _ = writeln!(
                out,
                "       {} {}: {}",
                crate::duration::utc_clock(r.at),
                r.verdict,
                r.reading
            );
        }
        if let Some(e) = &step.error {
            let _ = writeln!(out, "       error: {}", e.replace('\n', "\n              "));
        }
    }
    cfg.printer.text(&out);
    Ok(())
}
