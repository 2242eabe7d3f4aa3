//! Performing one plan step, with the commands the step carries.

use std::path::Path;

use anyhow::{Context, bail};

use super::core::{Executor, unless_stopped};
use super::{checks, gates};
use crate::advertise;
use crate::files::write_atomically;
use crate::plan::{Action, Step};

pub async fn perform(ex: &mut Executor<'_>, step: &Step) -> anyhow::Result<()> {
    match &step.action {
        Action::Run { command } => {
            let out = match ex.run(command).await {
                // A reboot may take the connection down with it before its
                // command returns: that is no failure; the gates after it
                // (SSH down, a new boot id) tell whether it happened.
                Err(e)
                    if matches!(step.done_if, Some(crate::plan::DoneIf::NewBoot { .. }))
                        && e.chain().any(|c| {
                            matches!(
                                c.downcast_ref::<crate::remote::ExecError>(),
                                Some(crate::remote::ExecError::Disconnected { .. })
                            )
                        }) =>
                {
                    ex.out.note(&format!(
                        "{}: the connection went down with the reboot before its command returned; the next gates tell whether it happened",
                        step.node
                    ));
                    String::new()
                }
                r => r?,
            };
            if !out.trim().is_empty() {
                ex.out.note(&crate::remote::trim_output(&out));
            }
        }
        Action::Record { name, command } => {
            let out = ex.run(command).await?;
            ex.keep(&step.node, name, out.trim().to_owned())?;
        }
        Action::RecordCalls { .. } => super::rtpengine::record_calls(ex, step).await?,
        Action::Gate { .. } => gates::wait(ex, step).await?,
        Action::Safety { safety } => {
            let seen = unless_stopped(&ex.stop, checks::safety(ex, safety)).await?;
            ex.out.note(&seen);
        }
        Action::Advertise { .. } => advertise(ex, step).await?,
        Action::DrainToExit { command, .. } => {
            ex.run(command).await?;
        }
        Action::StatusCommand { command, send, .. } => {
            let node = ex.node(&send.relay)?;
            let reply = unless_stopped(&ex.stop, crate::stats::send(&ex.remote, &node, send)).await?;
            let draining = relay::stats::parse_drain_reply(&reply)
                .with_context(|| format!("the reply to `{command}`"))?;
            if draining != (command == "drain_enable") {
                bail!("`{command}` answered `is_draining: {}`", u8::from(draining));
            }
        }
        Action::Upload {
            on,
            from,
            cut,
            commands,
            ..
        } => {
            let content = upload_content(ex, from, cut.as_deref())?;
            let node = ex.plan.node(on)?;
            upload(ex, &node, &content, commands).await?;
        }
        Action::Restore { command, .. } => {
            ex.run(command).await?;
        }
        Action::DatastoreConfig {
            on,
            store,
            path,
            content,
            read,
            commands,
        } => {
            let (code, text) = ex.probe(read).await?;
            let problem = match code {
                3 => Some("missing".to_owned()),
                0 => {
                    let parsed = match store {
                        crate::playbook::Store::Chronos => crate::clearwater::chronos_cluster(&text),
                        crate::playbook::Store::Memcached => crate::clearwater::cluster_settings(&text),
                    };
                    match parsed {
                        Ok(nodes) => {
                            ex.out.note(&format!(
                                "{path} on {} is valid ({} entries): left as it is",
                                step.node,
                                nodes.len()
                            ));
                            None
                        }
                        Err(why) => Some(format!("invalid ({why})")),
                    }
                }
                other => bail!("{path} on {} cannot be read (exit {other})", step.node),
            };
            if let Some(why) = problem {
                let node = ex.plan.node(on)?;
                upload(ex, &node, content.as_bytes(), commands).await?;
                ex.out.note(&format!(
                    "{path} on {} was {why}: written listing every Vellum node of the site{}",
                    step.node,
                    if why == "missing" {
                        String::new()
                    } else {
                        format!(", the invalid one kept as {}", backup_name(commands))
                    }
                ));
            }
        }
        Action::CopyFile {
            on,
            path,
            source,
            read,
            commands,
        } => {
            let text = ex.run(read).await?;
            if text.contains('\u{fffd}') {
                bail!("{path} on {source} is not text; nothing was copied");
            }
            let node = ex.plan.node(on)?;
            upload(ex, &node, text.as_bytes(), commands).await?;
            ex.out.note(&format!(
                "{path} on {} is now {source}'s, its own kept as {}",
                step.node,
                backup_name(commands)
            ));
        }
        Action::ReadServed {
            target,
            record,
            new_not_after,
            allow_earlier,
            ..
        } => {
            let t = target.clone();
            let served = unless_stopped(&ex.stop, async move {
                tokio::task::spawn_blocking(move || {
                    crate::served_cert::read(&t, std::time::Duration::from_secs(5))
                })
                .await?
            })
            .await
            .with_context(|| {
                format!(
                    "cannot read the certificate {} serves on {target}, so a rollback could not be checked; nothing of {} was changed",
                    step.node, step.node
                )
            })?;
            if served.not_after > *new_not_after && !allow_earlier {
                bail!(
                    "{} serves {} until {}, later than the new certificate ({}): refusing to shorten it; nothing of {} was changed\nhelp: pass `--allow-earlier-expiry` if that is intended",
                    step.node,
                    served.subject,
                    crate::cert::date(served.not_after),
                    crate::cert::date(*new_not_after),
                    step.node
                );
            }
            ex.out.note(&format!(
                "{} serves {}, valid until {}, sha256 {}",
                step.node,
                served.subject,
                crate::cert::date(served.not_after),
                served.fingerprint
            ));
            ex.keep(&step.node, record, served.fingerprint)?;
        }
        Action::SetConfig {
            on,
            path,
            set,
            unset,
            read,
            commands,
        } => {
            let node = ex.plan.node(on)?;
            let current = ex.run(read).await?;
            if current.contains('\u{fffd}') {
                bail!("{path} on {} is not text", step.node);
            }
            let edited = crate::envfile::edit(&current, set, unset);
            upload(ex, &node, edited.as_bytes(), commands).await?;
        }
        Action::Confirm {
            prompt,
            allocations,
            service,
        } => {
            let mut question = prompt.clone();
            if let Some(read) = allocations {
                let node = ex.node(&read.relay)?;
                let reading = unless_stopped(&ex.stop, crate::stats::read(&ex.remote, &node, read)).await;
                question = match (reading, service) {
                    (Ok(s), _) => format!("{question} ({} allocations now)", s.allocations),
                    (Err(e), Some(service)) => {
                        let (up, seen) = unless_stopped(&ex.stop, service.read(&ex.remote, &node)).await?;
                        if up {
                            return Err(e.context(format!(
                                "the service of {} is up ({seen}) but its allocations cannot be read, so what a restart drops is unknown; not restarting",
                                step.node
                            )));
                        }
                        format!("{question} (it is down: {seen}; it carries no calls)")
                    }
                    (Err(e), None) => return Err(e),
                };
            }
            ex.ask(&question).await?;
        }
    }
    Ok(())
}

/// The name an upload keeps the file it replaces under.
fn backup_name(c: &crate::remote::UploadCommands) -> String {
    c.backup
        .as_ref()
        .and_then(|b| b.argv.last().cloned())
        .unwrap_or_else(|| "no backup".into())
}

/// What an upload writes: the files as the `bundle-valid` check read them
/// (or, for other uploads, as they are now), one after the other, or the
/// `cut` part (`chain` or `key`) of a bundle.
fn upload_content(ex: &Executor<'_>, from: &[String], cut: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let read = |f: &String| -> anyhow::Result<Vec<u8>> {
        match ex.files.get(f) {
            Some(b) => Ok(b.clone()),
            None => std::fs::read(f).with_context(|| format!("cannot read {f}")),
        }
    };
    if let Some(part) = cut {
        let f = from.first().context("an upload with `cut` names no file")?;
        let (chain, key) = relay::pem::split(Path::new(f), &read(f)?)?;
        return Ok(match part {
            "chain" => chain,
            "key" => key,
            other => bail!("an upload cuts `{other}` out of {f}: only `chain` and `key` exist"),
        }
        .into_bytes());
    }
    let mut content = Vec::new();
    for f in from {
        if !content.is_empty() && !content.ends_with(b"\n") {
            content.push(b'\n');
        }
        content.extend(read(f)?);
    }
    Ok(content)
}

/// An upload a stop at once abandons; its temporary file is then removed
/// with the plan's own cleanup command.
async fn upload(
    ex: &Executor<'_>,
    node: &crate::remote::Node,
    content: &[u8],
    commands: &crate::remote::UploadCommands,
) -> anyhow::Result<()> {
    let result = unless_stopped(&ex.stop, ex.remote.upload(node, content, commands)).await;
    if result.is_err() {
        let _ = ex
            .remote
            .probe(node, &commands.cleanup, node.access.ssh.command_timeout, None)
            .await;
    }
    result
}

/// Takes a relay out of (or puts it back into) the advertised list: edit the
/// values file atomically (a backup of the original is kept once per run),
/// then run the apply commands. If one fails, the file is put back as it was
/// and the run stops.
async fn advertise(ex: &mut Executor<'_>, step: &Step) -> anyhow::Result<()> {
    let Action::Advertise {
        out, edit, commands, ..
    } = &step.action
    else {
        unreachable!("advertise performs advertise steps")
    };
    if let Some(ends) = ex
        .state
        .get(&step.node)
        .and_then(|s| s.drain_ended_by.as_ref())
        .filter(|_| !out)
    {
        // Listed while draining, it would refuse every new call.
        bail!(
            "{} is in its own drain mode, which nothing switches off but ending the process: not put back in the advertised list\nhelp: restart it (`{}` on {}), then put it back",
            step.node,
            ends[0].line,
            step.node
        );
    }
    let mut restore: Option<(std::path::PathBuf, String)> = None;
    if let Some(planned) = edit {
        let path = std::path::PathBuf::from(&planned.path);
        let text = crate::reader::read_text(&path)
            .with_context(|| format!("cannot read the values file {}", planned.path))?;
        let entries = advertise::Listing::parse(&text, &planned.list)
            .map_err(|e| e.located(&planned.path))?
            .entries(&planned.urls)
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} no longer lists every URL of {}; nothing was edited\nhelp: run the command again to plan against the file as it is now",
                    planned.path,
                    step.node
                )
            })?;
        let wanted = advertise::edit(&text, &entries, *out);
        let diff = advertise::diff(&planned.path, &text, &wanted);
        if diff.is_empty() && !planned.diff.is_empty() {
            // Edited before the commands that apply it ran (a run cut short
            // there, being resumed), or by someone else: as wanted, so only
            // the commands run.
            ex.out.note(&format!(
                "{} already has {}'s entries {}: not edited again",
                planned.path,
                step.node,
                if *out { "commented out" } else { "in" }
            ));
        } else if diff != planned.diff {
            bail!(
                "{} changed since the plan was made; nothing was edited\nhelp: run the command again to plan against the file as it is now",
                planned.path
            );
        }
        if !diff.is_empty() {
            let backup = path.with_file_name(format!(
                "{}.opsctl-{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("values"),
                ex.plan.run
            ));
            if !backup.exists() {
                std::fs::copy(&path, &backup)
                    .with_context(|| format!("cannot keep a backup as {}", backup.display()))?;
            }
            write_atomically(&path, &wanted)?;
            for line in diff.lines().filter(|l| {
                (l.starts_with('-') || l.starts_with('+')) && !l.starts_with("---") && !l.starts_with("+++")
            }) {
                ex.out.note(line);
            }
            restore = Some((path, text));
        }
    }
    for c in commands {
        if let Err(e) = ex.run(c).await {
            if let Some((path, text)) = &restore {
                write_atomically(path, text)?;
                return Err(e.context(format!("{} was put back as it was", path.display())));
            }
            return Err(e);
        }
    }
    Ok(())
}
