//! Performing one plan step.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use relay::StatsSource;

use super::{Executor, gates};
use crate::advertise::{self, ValuesFile};
use crate::inventory::Backend;
use crate::plan::{Action, Command, Plan, Step};

/// What in this plan opsctl cannot do yet; a plan that needs any of it is
/// refused before anything runs, rather than stopped half-way.
pub fn unsupported(plan: &Plan, inv: &crate::inventory::Inventory) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |what: String| {
        if !out.contains(&what) {
            out.push(what);
        }
    };
    for c in &plan.preflight {
        if !super::preflight::SUPPORTED.contains(&c.check) {
            add(format!("the safety check `{}`", c.check));
        }
    }
    for s in plan.steps() {
        match &s.action {
            Action::Gate { gate, .. } if !gates::SUPPORTED.contains(gate) => {
                add(format!("the `{gate}` gate"))
            }
            Action::Upload { cut: Some(_), .. } => add(
                "cutting the certificate chain and the key out of one bundle file (coturn's two files)"
                    .into(),
            ),
            Action::StatusCommand { .. } => {
                if let Some(r) = inv.relays().find(|r| r.name == s.node)
                    && !matches!(r.stats.source, StatsSource::Turnstats { .. })
                {
                    add(format!("switching {}'s drain mode", r.name));
                }
            }
            _ => {}
        }
    }
    out
}

pub async fn perform(ex: &mut Executor<'_>, step: &Step) -> anyhow::Result<()> {
    let timeout_of = |ex: &Executor, node: &str| {
        ex.node(node)
            .map(|n| n.access.ssh.command_timeout)
            .unwrap_or(std::time::Duration::from_secs(60))
    };
    match &step.action {
        Action::Run { command } => {
            let out = run(ex, command).await?;
            if !out.trim().is_empty() {
                ex.out.note(&crate::remote::trim_output(&out));
            }
        }
        Action::Record { name, command } => {
            let out = run(ex, command).await?;
            ex.records
                .insert((step.node.clone(), name.clone()), out.trim().to_owned());
        }
        Action::Gate { .. } => gates::wait(ex, step).await?,
        Action::Advertise { out, .. } => advertise(ex, step, *out).await?,
        Action::StatusCommand { command, .. } => {
            let r = ex.relay(&step.node)?.clone();
            let t = timeout_of(ex, &step.node);
            let reply = crate::stats::status_command(&ex.remote, &r, command, t).await?;
            let draining = relay::stats::parse_drain_reply(&reply)
                .with_context(|| format!("the reply to `{command}`"))?;
            if draining != (command == "drain_enable") {
                bail!("`{command}` answered `is_draining: {}`", u8::from(draining));
            }
        }
        Action::Upload {
            from,
            to,
            mode,
            temp,
            backup,
            ..
        } => {
            let mut content = Vec::new();
            for f in from {
                content.extend(std::fs::read(f).with_context(|| format!("cannot read {f}"))?);
            }
            let mode = u32::from_str_radix(mode, 8).with_context(|| format!("mode `{mode}`"))?;
            let node = ex.node(&step.node)?;
            let up = crate::remote::Upload {
                content: &content,
                to,
                mode,
                temp,
                backup: Some(backup),
            };
            ex.remote.upload(&node, &up, timeout_of(ex, &step.node)).await?;
        }
        Action::SetConfig { path, set, unset, .. } => {
            let node = ex.node(&step.node)?;
            let t = node.access.ssh.command_timeout;
            let current = ex.remote.download(&node, path, t).await?;
            let text =
                String::from_utf8(current).with_context(|| format!("{path} on {} is not text", step.node))?;
            let edited = crate::envfile::edit(&text, set, unset);
            let stat = crate::command::Command::remote(
                &node.name,
                &node.access,
                vec!["stat".into(), "-c".into(), "%a".into(), path.clone()],
            );
            let mode = ex.remote.run(&node, &stat, t).await?.stdout;
            let mode = u32::from_str_radix(mode.trim(), 8).unwrap_or(0o644);
            let temp = format!("{path}.opsctl-{}.tmp", ex.plan.run);
            let up = crate::remote::Upload {
                content: edited.as_bytes(),
                to: path,
                mode,
                temp: &temp,
                backup: None,
            };
            ex.remote.upload(&node, &up, t).await?;
        }
        Action::Confirm {
            prompt,
            show_allocations,
        } => confirm(ex, step, prompt, *show_allocations).await?,
    }
    Ok(())
}

/// Runs a command where the plan says: on a node, or here.
async fn run(ex: &Executor<'_>, c: &Command) -> anyhow::Result<String> {
    let node = if c.on.address == "local" && c.on.node == "local" {
        crate::remote::Node::here()
    } else {
        ex.node(&c.on.node)?
    };
    let t = node.access.ssh.command_timeout;
    Ok(ex.remote.run(&node, c, t).await?.stdout)
}

/// Takes a relay out of (or puts it back into) the advertised list: edit the
/// values file atomically (a backup of the original is kept once per run),
/// then run the apply commands. If one fails, the file is put back as it was
/// and the run stops.
async fn advertise(ex: &mut Executor<'_>, step: &Step, out: bool) -> anyhow::Result<()> {
    let Action::Advertise { edit, commands, .. } = &step.action else {
        unreachable!()
    };
    let inv = ex.inv;
    let mut restore: Option<(std::path::PathBuf, String)> = None;
    if let (Backend::ValuesFile { .. }, Some(planned)) = (&inv.advertise.backend, edit) {
        let values = ValuesFile::load(inv)?.context("the values file")?;
        let r = ex.relay(&step.node)?;
        let entries = values
            .relay_entries(inv, std::iter::once(r))?
            .remove(&r.name)
            .unwrap_or_default();
        let wanted = advertise::edit(&values.text, &entries, out);
        let diff = advertise::diff(&values.label, &values.text, &wanted);
        if diff != planned.diff {
            bail!(
                "{} changed since the plan was made; nothing was edited\nhelp: run the command again to plan against the file as it is now",
                values.label
            );
        }
        if !diff.is_empty() {
            let backup = values.path.with_file_name(format!(
                "{}.opsctl-{}",
                values
                    .path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("values"),
                ex.plan.run
            ));
            if !backup.exists() {
                std::fs::copy(&values.path, &backup)
                    .with_context(|| format!("cannot keep a backup as {}", backup.display()))?;
            }
            write_atomically(&values.path, &wanted)?;
            for line in diff.lines().filter(|l| {
                (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++")
            }) {
                ex.out.note(line);
            }
            restore = Some((values.path.clone(), values.text.clone()));
        }
    }
    for c in commands {
        if let Err(e) = run(ex, c).await {
            if let Some((path, text)) = &restore {
                write_atomically(path, text)?;
                return Err(e.context(format!("{} was put back as it was", path.display())));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Write to a temporary file beside `path`, sync, rename: never half-written.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_file_name(format!(
        ".{}.opsctl-tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let perms = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    if let Some(p) = perms {
        std::fs::set_permissions(&tmp, p)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

async fn confirm(ex: &Executor<'_>, step: &Step, prompt: &str, show_allocations: bool) -> anyhow::Result<()> {
    let mut question = prompt.to_owned();
    if show_allocations {
        let r = ex.relay(&step.node)?;
        let reading = crate::stats::read(&ex.remote, r, r.access.ssh.command_timeout).await?;
        question = format!("{question} ({} allocations now)", reading.allocations);
    }
    ask(ex, &question).await
}

/// Asks a yes/no question: `--yes` answers yes; with no terminal, refuse.
pub async fn ask(ex: &Executor<'_>, question: &str) -> anyhow::Result<()> {
    if ex.opts.yes {
        ex.out.note(&format!("{question}: yes (--yes)"));
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !console::Term::stderr().is_term() {
        bail!(
            "`{question}?` needs an answer, and there is no terminal to ask on\nhelp: pass `--yes` to answer yes in automation"
        );
    }
    let yes = dialoguer::Confirm::new()
        .with_prompt(question.to_owned())
        .default(false)
        .interact_on(&console::Term::stderr())
        .context("asking for confirmation")?;
    if !yes {
        bail!("not confirmed: {question}");
    }
    Ok(())
}
