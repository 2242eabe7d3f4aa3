//! The plan as text, for people: what `--dry-run` prints.

use std::fmt::Write as _;

use super::{Action, Command, Plan};

pub fn text(plan: &Plan) -> String {
    let mut o = String::new();
    let origin = if plan.playbook.origin == "built-in" {
        "built-in playbook".to_owned()
    } else {
        format!("playbook {}", plan.playbook.origin)
    };
    let _ = writeln!(o, "plan: {} ({origin}), run {}", plan.procedure, plan.run);
    if !plan.description.is_empty() {
        let _ = writeln!(o, "  {}", plan.description);
    }
    let _ = writeln!(o, "inventory: {}", plan.inventory);
    let _ = writeln!(o, "targets: {}", plan.targets.join(", "));
    for (relay, run) in &plan.continues {
        let _ = writeln!(
            o,
            "continues: run {run} left {relay} out of the advertised list; this run takes it from there"
        );
    }
    if !plan.preflight.is_empty() {
        let _ = writeln!(o, "\nsafety checks, all before anything changes:");
        let width = plan.preflight.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in &plan.preflight {
            let _ = writeln!(o, "  {:width$}  {}", c.check, c.description);
        }
    }
    for section in &plan.sections {
        let _ = writeln!(o, "\n{}", section.title);
        if section.steps.is_empty() {
            let _ = writeln!(o, "  (no steps apply)");
        }
        for step in &section.steps {
            let n = format!("{:>4}. ", step.number);
            let pad = " ".repeat(n.len());
            let _ = writeln!(o, "{n}{}", step.title);
            action(&mut o, &step.action, &pad);
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(o, "\nnotes:");
        for n in &plan.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    o
}

fn command(o: &mut String, c: &Command, pad: &str) {
    let place = if c.on.address == "local" {
        match &c.cwd {
            Some(d) => format!("here, in {d}"),
            None => "here".to_owned(),
        }
    } else {
        format!("{} ({})", c.on.node, c.on.address)
    };
    let _ = writeln!(o, "{pad}  on {place}:");
    let _ = writeln!(o, "{pad}    $ {}", c.line);
}

fn action(o: &mut String, a: &Action, pad: &str) {
    match a {
        Action::Run { command: c } => command(o, c, pad),
        Action::Record { name, command: c } => {
            command(o, c, pad);
            let _ = writeln!(o, "{pad}  keep its output as `{name}`");
        }
        Action::Gate {
            fact,
            source,
            poll,
            timeout,
            on_timeout,
            ..
        } => {
            let _ = writeln!(o, "{pad}  until {fact}");
            let _ = writeln!(o, "{pad}  read by {source}");
            let _ = writeln!(
                o,
                "{pad}  poll every {poll}, timeout {timeout}; on timeout: {on_timeout}"
            );
        }
        Action::Advertise {
            backend,
            edit,
            commands,
            ..
        } => {
            let _ = writeln!(o, "{pad}  backend: {backend}");
            if let Some(e) = edit {
                if e.diff.is_empty() {
                    let _ = writeln!(o, "{pad}  edit {}: already as wanted, no change", e.path);
                } else {
                    let _ = writeln!(o, "{pad}  edit {} (a backup is kept):", e.path);
                    for line in e.diff.lines() {
                        let _ = writeln!(o, "{pad}    {line}");
                    }
                }
            }
            for c in commands {
                command(o, c, pad);
            }
            if edit.is_some() {
                let _ = writeln!(
                    o,
                    "{pad}  if a command fails, the file is restored and the run stops"
                );
            }
        }
        Action::StatusCommand {
            on,
            via,
            command,
            cost,
        } => {
            let _ = writeln!(o, "{pad}  send `{command}` to {}'s {via}", on.node);
            if let Some(c) = cost {
                let _ = writeln!(o, "{pad}  cost: {c}");
            }
        }
        Action::Upload {
            on,
            content,
            from,
            to,
            cut: _,
            mode,
            temp,
            backup,
        } => {
            let _ = writeln!(o, "{pad}  {content} to {}:{to} (mode {mode})", on.node);
            let _ = writeln!(
                o,
                "{pad}  from {}: write {temp}, sync, check its SHA-256 on the node,",
                from.join(" + ")
            );
            let _ = writeln!(o, "{pad}  keep the current file as {backup}, rename into place");
        }
        Action::SetConfig { on, path, set, unset } => {
            let _ = writeln!(
                o,
                "{pad}  on {} ({}), {path}, written to a temporary file and renamed:",
                on.node, on.address
            );
            for (k, v) in set {
                let _ = writeln!(o, "{pad}  set   {k}={v}");
            }
            for k in unset {
                let _ = writeln!(o, "{pad}  unset {k}");
            }
        }
        Action::Confirm {
            prompt,
            show_allocations,
        } => {
            let extra = if *show_allocations {
                " (showing its current allocations)"
            } else {
                ""
            };
            let _ = writeln!(o, "{pad}  ask: {prompt}?{extra}; `--yes` answers yes");
        }
    }
}
