//! Why a stats reply was not accepted. Every variant quotes what it refused,
//! so an operator can see at once what the relay actually said.

/// Longest quote kept in an error, in characters; replies can be long.
const QUOTE_MAX: usize = 120;

/// Errors from the stats parsers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The reply had no text at all.
    #[error("{reply} reply is empty")]
    Empty {
        /// Which reply (`turnstats`, `coturn ps`, ...).
        reply: &'static str,
    },
    /// A line the parser does not know.
    #[error("unexpected line `{line}` in {reply} reply")]
    UnknownLine {
        /// Which reply.
        reply: &'static str,
        /// The line, quoted (shortened if long).
        line: String,
    },
    /// A known line whose number does not parse.
    #[error("bad number in line `{line}` of {reply} reply")]
    BadNumber {
        /// Which reply.
        reply: &'static str,
        /// The line, quoted.
        line: String,
    },
    /// A value given twice.
    #[error("line `{line}` repeats a value already read in {reply} reply")]
    Duplicate {
        /// Which reply.
        reply: &'static str,
        /// The second line, quoted.
        line: String,
    },
    /// A required line is missing.
    #[error("{reply} reply has no `{field}` line")]
    Missing {
        /// Which reply.
        reply: &'static str,
        /// The line's key.
        field: &'static str,
    },
    /// The relay answered that it does not know the command.
    #[error("relay answered `{line}`: its status module does not know the command")]
    CommandNotFound {
        /// The relay's answer, quoted.
        line: String,
    },
    /// The listed sessions do not add up to the stated total.
    #[error("coturn `ps` lists {listed} sessions but says `{line}`")]
    Inconsistent {
        /// Session headers counted.
        listed: u64,
        /// The total line, quoted.
        line: String,
    },
    /// The reply is not UTF-8 text.
    #[error("{reply} reply is not text: `{text}`")]
    NotText {
        /// Which reply.
        reply: &'static str,
        /// The reply, decoded lossily and quoted.
        text: String,
    },
    /// The reply is longer than any real one.
    #[error("{reply} reply is over {max} bytes")]
    TooLong {
        /// Which reply.
        reply: &'static str,
        /// The limit.
        max: usize,
    },
}

/// `text` shortened to [`QUOTE_MAX`] characters for an error message.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quotes_are_cut_on_a_character() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(200);
        assert_eq!(quote(&long).chars().count(), QUOTE_MAX + 3);
    }

    #[test]
    fn messages_quote_the_line() {
        let e = ParseError::UnknownLine {
            reply: "turnstats",
            line: quote("allocs_now 3"),
        };
        assert_eq!(e.to_string(), "unexpected line `allocs_now 3` in turnstats reply");
    }
}
