//! The one printer every command writes through. People read stderr:
//! cargo-style status lines with the verb right-aligned, notes, warnings and
//! a spinner for every wait (drawn only on a terminal and not with `-v`,
//! cleared while a line prints). Results go to stdout: text, one JSON
//! document (`--output json`), or for a real run one JSON event per line.
//! An error is printed here too: on stderr, and with `--output json` also
//! as a JSON object on stdout when the command wrote nothing else there.

use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::Report;

pub struct Printer {
    quiet: bool,
    progress: bool,
    json: bool,
    /// The spinner on screen now, cleared around every line printed.
    bar: Mutex<Option<ProgressBar>>,
    /// Something was written to stdout: an error is then not a document of its own.
    wrote: AtomicBool,
    /// Where no spinner is drawn, a wait prints a line at least this often.
    every: Duration,
}

#[derive(Clone, Copy)]
pub enum Tone {
    Good,
    Warn,
    Bad,
}

/// A wait's spinner; gone from the screen when dropped. Where no spinner is
/// drawn (no terminal, or `-v`), its progress is printed as lines instead:
/// the first reading, every reading that differs from the last printed, and
/// one at least every [`PROGRESS_EVERY`] (or `--progress-every`).
pub struct Spinner<'a> {
    bar: ProgressBar,
    printer: &'a Printer,
    /// When a progress line was last printed, and the reading it told
    /// (lines only: no spinner drawn).
    last_line: Option<std::cell::RefCell<Option<(std::time::Instant, String)>>>,
}

/// How often, at least, a wait prints a progress line where no spinner is
/// drawn, by default.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(60);

impl Spinner<'_> {
    /// The wait's progress: `reading` is what tells one reading from the
    /// next (a drain's count, not its rate); `message` is the line.
    pub fn progress(&self, reading: &str, message: String) {
        if let Some(last) = &self.last_line {
            let mut last = last.borrow_mut();
            let due = match &*last {
                None => true,
                Some((at, told)) => told != reading || at.elapsed() >= self.printer.every,
            };
            if due {
                *last = Some((std::time::Instant::now(), reading.to_owned()));
                self.printer.note(&message);
            }
        }
        self.bar.set_message(message);
    }
}

impl Drop for Spinner<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if let Ok(mut b) = self.printer.bar.lock() {
            *b = None;
        }
    }
}

impl Printer {
    /// `progress`: draw spinners when stderr is a terminal; `json`: results
    /// and events on stdout as JSON.
    pub fn new(quiet: bool, progress: bool, json: bool) -> Printer {
        Printer {
            quiet,
            progress: progress && console::Term::stderr().is_term(),
            json,
            bar: Mutex::new(None),
            wrote: AtomicBool::new(false),
            every: PROGRESS_EVERY,
        }
    }

    /// Where no spinner is drawn, a wait prints a line at least this often.
    pub fn with_progress_every(mut self, every: Duration) -> Printer {
        self.every = every;
        self
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Writes a line on stderr with the spinner (if any) out of the way.
    fn stderr(&self, text: &str) {
        let bar = self.bar.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// `   Restarting relay-1` — the verb in a fixed column.
    pub fn status(&self, verb: &str, message: &str) {
        self.line(verb, message, Tone::Good);
    }

    pub fn line(&self, verb: &str, message: &str, tone: Tone) {
        if self.quiet && matches!(tone, Tone::Good) {
            return;
        }
        let verb = format!("{verb:>12}");
        let verb = match tone {
            Tone::Good => style(verb).green().bold(),
            Tone::Warn => style(verb).yellow().bold(),
            Tone::Bad => style(verb).red().bold(),
        };
        self.stderr(&format!("{verb} {message}"));
    }

    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.stderr(&format!("{:>12} {}", "", style(message).dim()));
        }
    }

    /// Plain text for people on stderr (the lab's own lines).
    pub fn say(&self, message: &str) {
        if !self.quiet {
            self.stderr(message);
        }
    }

    /// A spinner for a wait; hidden when stderr is not a terminal.
    pub fn wait(&self, message: &str) -> Spinner<'_> {
        let drawn = self.progress && !self.quiet;
        let target = if drawn {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar.clone());
        }
        Spinner {
            bar,
            printer: self,
            last_line: (!drawn).then(|| std::cell::RefCell::new(None)),
        }
    }

    /// A result in text, on stdout.
    pub fn text(&self, text: &str) {
        self.wrote.store(true, Ordering::SeqCst);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// A result as one JSON document on stdout.
    pub fn document<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.text(&format!("{text}\n"));
        Ok(())
    }

    /// One event of a run, one JSON object per line on stdout (`--output json` only).
    pub fn event<T: Serialize>(&self, value: &T) {
        if !self.json {
            return;
        }
        if let Ok(line) = serde_json::to_string(value) {
            self.text(&format!("{line}\n"));
            // Events are a stream: the error that may end it is one more line.
            self.wrote.store(false, Ordering::SeqCst);
        }
    }

    /// The error that ends the command.
    pub fn error(&self, e: &anyhow::Error) -> Report {
        let report = Report::of(e);
        self.stderr(&report.text());
        if self.json && !self.wrote.load(Ordering::SeqCst) {
            #[derive(Serialize)]
            struct Doc<'a> {
                error: &'a Report,
            }
            if let Ok(line) = serde_json::to_string(&Doc { error: &report }) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
            }
        }
        report
    }
}
