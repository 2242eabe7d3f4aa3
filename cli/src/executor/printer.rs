//! Everything the executor tells people, on stderr: cargo-style status lines
//! with the verb right-aligned, a progress line for every wait, and the
//! closing summary. Progress is drawn only on a terminal and not with `-v`
//! (the logs say it instead).

use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Printer {
    quiet: bool,
    progress: bool,
}

#[derive(Clone, Copy)]
pub enum Tone {
    Good,
    Warn,
    Bad,
}

impl Printer {
    pub fn new(quiet: bool, progress: bool) -> Printer {
        Printer {
            quiet,
            progress: progress && console::Term::stderr().is_term(),
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
        eprintln!("{verb} {message}");
    }

    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{:>12} {}", "", style(message).dim());
        }
    }

    /// A spinner for a wait; hidden when stderr is not a terminal.
    pub fn wait(&self, message: &str) -> ProgressBar {
        let target = if self.progress && !self.quiet {
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
        bar
    }
}
