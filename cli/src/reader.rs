//! Typed reading of a located YAML tree, collecting every problem at once.
//!
//! A reader asks a mapping for the keys it knows; whatever the file holds that
//! no reader asked for is reported as an unknown field with the nearest known
//! name. Each problem names the file, line, column and field path, says what is
//! wrong and, where it can, how to fix it.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use crate::suggest;
use crate::yaml::{Key, Node, Pos, Value};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub pos: Pos,
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

/// Every problem found in one file, in file order.
#[derive(Debug)]
pub struct InputError {
    pub file: String,
    pub diags: Vec<Diag>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diags.len();
        write!(
            f,
            "{} has {n} problem{}:",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diags {
            write!(f, "\n  {}:{}:{}: ", self.file, d.pos.line, d.pos.col)?;
            if !d.path.is_empty() {
                write!(f, "{}: ", d.path)?;
            }
            f.write_str(&d.message)?;
            if let Some(help) = &d.help {
                write!(f, "\n      help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

/// Collects problems while a file is read.
pub struct Diags {
    file: String,
    items: RefCell<Vec<Diag>>,
}

impl Diags {
    pub fn new(file: impl Into<String>) -> Self {
        Diags {
            file: file.into(),
            items: RefCell::new(Vec::new()),
        }
    }

    pub fn report(&self, pos: Pos, path: &str, message: impl Into<String>, help: Option<String>) {
        self.items.borrow_mut().push(Diag {
            pos,
            path: path.to_owned(),
            message: message.into(),
            help,
        });
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    /// `Ok(value)` when nothing was reported, else every problem, sorted by place.
    pub fn finish<T>(self, value: T) -> Result<T, InputError> {
        let mut diags = self.items.into_inner();
        if diags.is_empty() {
            return Ok(value);
        }
        diags.sort_by_key(|d| d.pos);
        diags.dedup();
        Err(InputError {
            file: self.file,
            diags,
        })
    }
}

/// A value in the tree with its field path, ready to be read as a type.
pub struct At<'a> {
    pub node: &'a Node,
    pub path: String,
    pub diags: &'a Diags,
}

impl<'a> At<'a> {
    pub fn root(node: &'a Node, diags: &'a Diags) -> Self {
        At {
            node,
            path: String::new(),
            diags,
        }
    }

    pub fn pos(&self) -> Pos {
        self.node.pos
    }

    pub fn error(&self, message: impl Into<String>, help: Option<String>) {
        self.diags.report(self.node.pos, &self.path, message, help);
    }

    fn wrong_type(&self, expected: &str) {
        self.error(
            format!("expected {expected}, found {}", self.node.value.describe()),
            None,
        );
    }

    pub fn str(&self) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type("a string");
                None
            }
        }
    }

    /// A string that must not be empty (names, hosts, paths).
    pub fn name(&self) -> Option<String> {
        let s = self.str()?;
        if s.trim().is_empty() {
            self.error("must not be empty", None);
            return None;
        }
        Some(s)
    }

    /// A non-empty list of non-empty strings.
    pub fn strings(&self) -> Option<Vec<String>> {
        let items = self.list()?;
        items.iter().map(|i| i.name()).collect()
    }

    /// A name that reaches ssh or a command line as one argument (a user, a
    /// unit or container name, a path): it must not start with `-` (it would
    /// be read as an option) nor hold control characters.
    pub fn word(&self, what: &str) -> Option<String> {
        let s = self.name()?;
        if let Some(why) = unsafe_word(&s) {
            self.error(
                format!("`{}` is not a usable {what}: {why}", s.escape_debug()),
                None,
            );
            return None;
        }
        Some(s)
    }

    /// A host: a hostname, an IPv4 address, or an IPv6 address (brackets
    /// allowed, and taken off).
    pub fn host(&self) -> Option<String> {
        let s = self.name()?;
        match check_host(&s) {
            Ok(h) => Some(h),
            Err(why) => {
                self.error(
                    format!("`{}` is not a host: {why}", s.escape_debug()),
                    Some("write a hostname (`relay1.example.com`), an IPv4 (`10.0.0.11`) or an IPv6 address (`fd00::11`); the port goes in `ssh.port`".into()),
                );
                None
            }
        }
    }

    /// An SSH jump host: `[user@]host[:port]`, an IPv6 host in brackets.
    pub fn jump_host(&self) -> Option<String> {
        let s = self.name()?;
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s.as_str()),
        };
        let host = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(h, p)| (h, p.strip_prefix(':'))),
            None => Some(match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (rest, None),
            }),
        };
        let why = match (user.and_then(unsafe_word), host) {
            (Some(why), _) => Some(format!("its user {why}")),
            (None, None) => Some("an IPv6 address in `[` has no `]`".to_owned()),
            (None, Some((h, port))) => check_host(h).err().or_else(|| {
                port.filter(|p| p.parse::<u16>().is_err())
                    .map(|p| format!("`{p}` is not a port"))
            }),
        };
        match why {
            None => Some(s),
            Some(why) => {
                self.error(
                    format!("`{}` is not a jump host: {why}", s.escape_debug()),
                    Some("write `[user@]host[:port]`, e.g. `ops@bastion.example.com:2222`".into()),
                );
                None
            }
        }
    }

    pub fn bool(&self) -> Option<bool> {
        match self.node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type("`true` or `false`");
                None
            }
        }
    }

    pub fn int<T: TryFrom<i128> + Bounded>(&self, what: &str) -> Option<T> {
        match self.node.value {
            Value::Int(i) => match T::try_from(i) {
                Ok(v) => Some(v),
                Err(_) if i > T::MAX => {
                    self.error(format!("{i} is too large for {what} (at most {})", T::MAX), None);
                    None
                }
                Err(_) => {
                    self.error(format!("{i} is too small for {what} (at least {})", T::MIN), None);
                    None
                }
            },
            _ => {
                self.wrong_type(what);
                None
            }
        }
    }

    pub fn duration(&self) -> Option<Duration> {
        let text = match &self.node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => {
                self.wrong_type("a duration such as `30s`, `10m` or `12h`");
                return None;
            }
        };
        match crate::duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(format!("cannot read duration: {e}"), None);
                None
            }
        }
    }

    /// One of a fixed set of words; a near miss gets "did you mean".
    pub fn choice<T: Copy>(&self, options: &[(&'static str, T)]) -> Option<T> {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let Value::Str(s) = &self.node.value else {
            self.wrong_type(&format!("one of {}", quote_list(&names)));
            return None;
        };
        if let Some((_, v)) = options.iter().find(|(name, _)| name == s) {
            return Some(*v);
        }
        let help = suggest::closest(s, names.iter().copied())
            .map(|n| format!("did you mean `{n}`?"))
            .or_else(|| Some(format!("use one of: {}", names.join(", "))));
        self.error(format!("`{s}` is not one of {}", quote_list(&names)), help);
        None
    }

    /// A command: a list of arguments, or one string split like a shell would
    /// split words (no expansion, no operators: nothing is run by a shell).
    pub fn argv(&self) -> Option<Vec<String>> {
        let argv = match &self.node.value {
            Value::Str(s) => match shlex::split(s) {
                Some(words) => words,
                None => {
                    self.error(
                        "cannot split this command into arguments (unbalanced quotes?)",
                        Some("write it as a list of arguments instead".into()),
                    );
                    return None;
                }
            },
            Value::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    out.push(self.index(i, item).scalar_text()?);
                }
                out
            }
            _ => {
                self.wrong_type("a command (a string or a list of arguments)");
                return None;
            }
        };
        if let Some(bad) = argv.iter().find(|a| a.chars().any(char::is_control)) {
            self.error(
                format!("`{}` holds a control character", bad.escape_debug()),
                Some("write the command without newlines, tabs or other control characters".into()),
            );
            return None;
        }
        if argv.first().is_some_and(|w| w.starts_with('-')) {
            self.error(
                format!("the command starts with `{}`, an option, not a program", argv[0]),
                Some("put the program first".into()),
            );
            return None;
        }
        if argv.is_empty() {
            self.error("the command is empty", None);
            return None;
        }
        Some(argv)
    }

    /// A scalar as text: numbers written bare in a command are still arguments.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.wrong_type("a string");
                None
            }
        }
    }

    pub fn index(&self, i: usize, node: &'a Node) -> At<'a> {
        At {
            node,
            path: format!("{}[{i}]", self.path),
            diags: self.diags,
        }
    }

    /// The items of a list.
    pub fn list(&self) -> Option<Vec<At<'a>>> {
        match &self.node.value {
            Value::Seq(items) => Some(items.iter().enumerate().map(|(i, n)| self.index(i, n)).collect()),
            _ => {
                self.wrong_type("a list");
                None
            }
        }
    }

    pub fn map(&self) -> Option<MapReader<'a>> {
        match &self.node.value {
            Value::Map(entries) => Some(MapReader {
                at: At {
                    node: self.node,
                    path: self.path.clone(),
                    diags: self.diags,
                },
                entries,
                known: Vec::new(),
                missing: Vec::new(),
            }),
            _ => {
                self.wrong_type("a mapping");
                None
            }
        }
    }
}

/// Reads a mapping key by key. When it is dropped (or [`MapReader::finish`]ed)
/// it reports the keys nobody asked for and the required keys that are
/// missing; a missing key that an unknown key is a near miss of is reported
/// once, as the misspelling.
pub struct MapReader<'a> {
    pub at: At<'a>,
    entries: &'a [(Key, Node)],
    known: Vec<&'static str>,
    missing: Vec<(&'static str, String)>,
}

impl<'a> MapReader<'a> {
    fn child_path(&self, key: &str) -> String {
        if self.at.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.at.path)
        }
    }

    /// The value under `key`, if present and not null.
    pub fn get(&mut self, key: &'static str) -> Option<At<'a>> {
        self.known.push(key);
        let (_, node) = self.entries.iter().find(|(k, _)| k.name == key)?;
        if matches!(node.value, Value::Null) {
            return None;
        }
        Some(At {
            node,
            path: self.child_path(key),
            diags: self.at.diags,
        })
    }

    /// Like [`MapReader::get`], reporting a missing key as a problem.
    pub fn require(&mut self, key: &'static str, help: &str) -> Option<At<'a>> {
        let v = self.get(key);
        if v.is_none() && !self.has(key) {
            self.missing.push((key, help.to_owned()));
        } else if v.is_none() {
            self.at.error(
                format!("`{key}` is empty"),
                (!help.is_empty()).then(|| help.to_owned()),
            );
        }
        v
    }

    /// How many keys of the mapping no reader has asked for (so far).
    pub fn unknown_keys(&self) -> usize {
        self.entries
            .iter()
            .filter(|(k, _)| !self.known.contains(&k.name.as_str()))
            .count()
    }

    /// Counts `keys` as known (for "did you mean") without reading them.
    pub fn expect(&mut self, keys: &[&'static str]) {
        self.known.extend_from_slice(keys);
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.name == key)
    }

    /// Reports a problem at `key` itself (not at the mapping holding it),
    /// and counts the key as known.
    pub fn key_error(&mut self, key: &'static str, message: impl Into<String>, help: Option<String>) {
        self.known.push(key);
        let pos = self
            .entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map_or(self.at.pos(), |(k, _)| k.pos);
        self.at.diags.report(pos, &self.child_path(key), message, help);
    }

    /// Done reading: the checks run as the reader is dropped.
    pub fn finish(self) {}
}

impl Drop for MapReader<'_> {
    fn drop(&mut self) {
        let mut explained = Vec::new();
        for (key, _) in self.entries {
            if self.known.contains(&key.name.as_str()) {
                continue;
            }
            let near = suggest::closest(&key.name, self.known.iter().copied());
            explained.extend(near);
            let help = near.map(|k| format!("did you mean `{k}`?")).or_else(|| {
                let mut names = self.known.clone();
                names.sort_unstable();
                names.dedup();
                Some(format!("known fields here: {}", names.join(", ")))
            });
            self.at.diags.report(
                key.pos,
                &self.child_path(&key.name),
                format!("unknown field `{}`", key.name),
                help,
            );
        }
        for (key, help) in &self.missing {
            if !explained.contains(key) {
                self.at.error(
                    format!("missing field `{key}`"),
                    (!help.is_empty()).then(|| help.clone()),
                );
            }
        }
    }
}

pub fn quote_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why `s` cannot be handed to ssh or a command as one argument, if it cannot.
pub fn unsafe_word(s: &str) -> Option<String> {
    if s.starts_with('-') {
        Some("it starts with `-`, so ssh or the command would read it as an option".into())
    } else if s.chars().any(char::is_control) {
        Some("it holds a control character".into())
    } else {
        None
    }
}

/// A hostname, IPv4 or IPv6 address (without brackets), or why not.
pub fn check_host(s: &str) -> Result<String, String> {
    if let Some(why) = unsafe_word(s) {
        return Err(why);
    }
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(bare.to_owned());
    }
    if bare.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in bare.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(if bare.contains(':') {
                "neither an IPv6 address nor a hostname (a port goes in `ssh.port`)".into()
            } else {
                "a hostname is letters, digits and `-` in dot-separated labels, none starting or ending with `-`".into()
            });
        }
    }
    Ok(bare.to_owned())
}

/// The range of an integer type, for "too large (at most N)".
pub trait Bounded {
    const MIN: i128;
    const MAX: i128;
}

macro_rules! bounded {
    ($($t:ty),*) => {$(
        impl Bounded for $t {
            const MIN: i128 = <$t>::MIN as i128;
            const MAX: i128 = <$t>::MAX as i128;
        }
    )*};
}

bounded!(u8, u16, u32, u64, usize, i32, i64);

/// The most an input file (inventory, playbook, values file) may hold: far
/// above any deployment, far below what would exhaust memory.
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Reads an input file as text, refusing one larger than [`MAX_INPUT`]
/// before it is read whole, and text that is not UTF-8 with where.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB, far more than an input of opsctl holds",
            MAX_INPUT / (1024 * 1024)
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let col = at - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
        std::io::Error::other(format!(
            "not UTF-8 text: line {line}, byte {col} of the line (byte {} of the file)",
            at + 1
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn problems(text: &str, read: impl Fn(&At)) -> String {
        let node = yaml::parse(text).unwrap();
        let diags = Diags::new("t.yaml");
        read(&At::root(&node, &diags));
        match diags.finish(()) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_keys_get_a_suggestion_and_every_problem_is_reported() {
        let out = problems("hots: a\nport: x\nname: n\n", |at| {
            let mut m = at.map().unwrap();
            m.get("host");
            m.get("port").and_then(|p| p.int::<u16>("a port number"));
            m.get("name");
            m.finish();
        });
        assert_eq!(
            out,
            "t.yaml has 2 problems:\n  \
             t.yaml:1:1: hots: unknown field `hots`\n      help: did you mean `host`?\n  \
             t.yaml:2:7: port: expected a port number, found a string"
        );
    }

    #[test]
    fn commands_split_like_words_and_keep_quoted_arguments() {
        let node = yaml::parse("a: systemctl restart 'my unit'\nb: [echo, 1]\n").unwrap();
        let diags = Diags::new("t.yaml");
        let mut m = At::root(&node, &diags).map().unwrap();
        assert_eq!(
            m.get("a").unwrap().argv().unwrap(),
            ["systemctl", "restart", "my unit"]
        );
        assert_eq!(m.get("b").unwrap().argv().unwrap(), ["echo", "1"]);
        assert!(diags.is_empty());
    }
}
