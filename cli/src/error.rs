//! One error for the whole command line: a kind that gives the exit status,
//! the message with every cause kept, and an optional help line.
//!
//! Errors travel as `anyhow::Error` with context added at each boundary; the
//! kind is carried by a marker somewhere in the chain ([`Error`], or the
//! input reader's [`InputError`]) and read once, by [`Report::of`], where
//! `main` prints the error.

use std::fmt;

use serde::Serialize;

use crate::reader::InputError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A mistake in what was typed.
    Usage,
    /// A mistake in an input file (inventory, playbook, values file).
    Input,
    /// The deployment's state does not allow it; nothing was changed.
    Refused,
    /// Stopped by the operator (Ctrl-C).
    Stopped,
    /// A step failed.
    Failed,
}

impl Kind {
    /// 2 for a mistake in the command line or an input file; 1 for a
    /// procedure that was refused, stopped or failed.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage | Kind::Input => 2,
            Kind::Refused | Kind::Stopped | Kind::Failed => 1,
        }
    }
}

/// A marker in an error chain: everything below it is of this kind.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    inner: anyhow::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// `message` as an error of `kind`.
pub fn new(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Error {
        kind,
        inner: anyhow::Error::msg(message.into()),
    }
    .into()
}

/// A mistake in what was typed.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    new(Kind::Usage, message)
}

/// Refused because of the deployment's state; nothing was changed.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    new(Kind::Refused, message)
}

/// `e`, with its causes, marked as being of `kind` (unless something in it
/// already says what it is).
pub fn mark(kind: Kind, e: anyhow::Error) -> anyhow::Error {
    if marked(&e).is_some() {
        return e;
    }
    Error { kind, inner: e }.into()
}

/// The kind a marker in the chain gives, the outermost first.
fn marked(e: &anyhow::Error) -> Option<Kind> {
    e.chain().find_map(|c| {
        if let Some(x) = c.downcast_ref::<Error>() {
            Some(x.kind)
        } else if c.is::<InputError>() {
            Some(Kind::Input)
        } else if c.is::<Stopped>() {
            Some(Kind::Stopped)
        } else {
            None
        }
    })
}

/// Whether `e` is of `kind`.
pub fn is(e: &anyhow::Error, kind: Kind) -> bool {
    marked(e).unwrap_or(Kind::Failed) == kind
}

/// The run was stopped (Ctrl-C).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by Ctrl-C")
    }
}

impl std::error::Error for Stopped {}

/// An error as it is shown: text on stderr, or JSON on stdout.
#[derive(Debug, Serialize)]
pub struct Report {
    pub kind: Kind,
    /// The whole message, every cause after a `: `, without the help lines.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Each cause on its own, outermost first.
    pub causes: Vec<String>,
    /// The whole text, help lines where they stand, as stderr shows it.
    #[serde(skip)]
    full: String,
}

impl Report {
    pub fn of(e: &anyhow::Error) -> Report {
        let full = format!("{e:#}");
        let (message, help) = split_help(&full);
        Report {
            full,
            kind: marked(e).unwrap_or(Kind::Failed),
            message,
            help,
            causes: e.chain().map(|c| split_help(&c.to_string()).0).collect(),
        }
    }

    /// `opsctl: error: ...` with each help line where its message put it,
    /// as printed on stderr.
    pub fn text(&self) -> String {
        format!("opsctl: error: {}", self.full)
    }
}

/// Messages carry their advice as lines starting `help: `; they are kept
/// apart, in order, and joined by newlines.
fn split_help(text: &str) -> (String, Option<String>) {
    let mut message = Vec::new();
    let mut help = Vec::new();
    for line in text.split('\n') {
        match line.strip_prefix("help: ") {
            Some(h) => help.push(h),
            None => message.push(line),
        }
    }
    let help = (!help.is_empty()).then(|| help.join("\nhelp: "));
    (message.join("\n"), help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_survives_context_and_causes_are_kept() {
        let e = mark(
            Kind::Usage,
            anyhow::anyhow!("no node `relay-9` in inv.yaml\nhelp: did you mean `relay-1`?"),
        )
        .context("planning restart");
        let r = Report::of(&e);
        assert_eq!(r.kind, Kind::Usage);
        assert_eq!(r.kind.exit_code(), 2);
        assert_eq!(r.message, "planning restart: no node `relay-9` in inv.yaml");
        assert_eq!(r.help.as_deref(), Some("did you mean `relay-1`?"));
        assert_eq!(r.causes, ["planning restart", "no node `relay-9` in inv.yaml"]);
        assert_eq!(
            r.text(),
            "opsctl: error: planning restart: no node `relay-9` in inv.yaml\nhelp: did you mean `relay-1`?"
        );
    }

    #[test]
    fn unmarked_errors_are_failures_and_an_inner_mark_wins() {
        let e = anyhow::anyhow!("ssh went away").context("step 3 failed");
        assert_eq!(Report::of(&e).kind, Kind::Failed);
        assert_eq!(Kind::Failed.exit_code(), 1);
        let r = mark(Kind::Usage, refused("below the minimum"));
        assert_eq!(Report::of(&r).kind, Kind::Refused);
    }
}
