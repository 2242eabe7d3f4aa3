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
