//! The advertised list: how a relay is taken out of, and put back into, the
//! list of relays clients receive.
//!
//! With the `values-file` backend the list lives in a Helm values file (brig's
//! `turnStatic.v2` in Wire's deployments). The file is read as YAML and the
//! list found by its path (`advertise.list`); only that sequence's entries
//! are ever edited, never a URL elsewhere in the file. A relay is taken out
//! by commenting out exactly the lines of its URLs, `# ` inserted after the
//! indentation, and put back by removing that again: every other byte of the
//! file, comments, order, indentation, line endings, stays as it was, so a
//! full round trip gives the file back byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::inventory::{Backend, Inventory, Relay};

/// The values file of the `values-file` backend, read once.
pub struct ValuesFile {
    pub path: PathBuf,
    pub label: String,
    pub text: String,
    /// The path of keys to the list (`brig.turnStatic.v2`).
    pub list: String,
    listing: Listing,
}

impl ValuesFile {
    /// The inventory's values file, or `None` for the other backends.
    pub fn load(inv: &Inventory) -> anyhow::Result<Option<ValuesFile>> {
        let Backend::ValuesFile { file, list, .. } = &inv.advertise.backend else {
            return Ok(None);
        };
        let text = crate::reader::read_text(file).with_context(|| {
            format!(
                "cannot read the values file {} (`advertise.file` in {})",
                file.display(),
                inv.file
            )
        })?;
        let label = file.display().to_string();
        let listing = Listing::parse(&text, list).map_err(|e| e.located(&label))?;
        Ok(Some(ValuesFile {
            path: file.clone(),
            label,
            listing,
            text,
            list: list.clone(),
        }))
    }

    /// Each relay's lines; every URL of every relay must be listed.
    pub fn relay_entries<'r>(
        &self,
        inv: &Inventory,
        relays: impl Iterator<Item = &'r Relay>,
    ) -> anyhow::Result<BTreeMap<String, Vec<Entry>>> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for r in relays {
            match self.listing.entries(&r.urls) {
                Ok(e) => {
                    out.insert(r.name.clone(), e);
                }
                Err(ps) => problems.extend(ps.into_iter().map(|p| match p {
                    Problem::Missing(url) => format!(
                        "relay `{}`: `{url}` is not in the list `{}` of {}",
                        r.name, self.list, self.label
                    ),
                })),
            }
        }
        if !problems.is_empty() {
            bail!(
                "the advertised list does not match the inventory:\n  {}\nhelp: make each relay's `urls` in {} exactly the entries {} lists for it",
                problems.join("\n  "),
                inv.file,
                self.label
            );
        }
        Ok(out)
    }
}

/// One line of the values file that lists one of a relay's URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 0-based line index.
    pub line: usize,
    pub url: String,
    pub commented: bool,
}

/// Whether a relay is in the list now, as the values file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Advertised,
    Unadvertised,
    /// Some entries commented out, some not: a half-finished edit.
    Partial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A URL of the relay is not an entry of the list.
    Missing(String),
}

/// Why the values file's list cannot be read or edited: where, what, and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    /// 1-based; `None` where the whole file is the problem.
    pub line: Option<u64>,
    pub message: String,
    pub help: String,
}

impl ListError {
    pub fn at(line: u64, message: impl Into<String>, help: impl Into<String>) -> ListError {
        ListError {
            line: Some(line),
            message: message.into(),
            help: help.into(),
        }
    }

    /// As an error naming the file.
    pub fn located(&self, file: &str) -> anyhow::Error {
        let place = match self.line {
            Some(l) => format!("{file}:{l}"),
            None => file.to_owned(),
        };
        crate::error::new(
            crate::error::Kind::Input,
            format!("{place}: {}\nhelp: {}", self.message, self.help),
        )
    }
}

/// Every entry the list at `path` holds now (not commented out), in file
/// order: what clients receive. Nothing when the file is not as it should be.
pub fn listed(text: &str, path: &str) -> Vec<String> {
    let Ok(listing) = Listing::parse(text, path) else {
        return Vec::new();
    };
    listing
        .all()
        .into_iter()
        .filter(|e| !e.commented)
        .map(|e| e.url.clone())
        .collect()
}

/// Splits into lines that keep their own line ending.
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// The list item a line holds, if it is one: `- url`, `- "url"`, `- url # note`.
/// Returns the value and whether the line is commented out (`# - url`).
fn item(line: &str) -> Option<(String, bool)> {
    let body = line.trim_start();
    let (body, commented) = match body.strip_prefix('#') {
        Some(rest) => (rest.trim_start(), true),
        None => (body, false),
    };
    let value = body.strip_prefix("- ")?.trim_end_matches(['\n', '\r']);
    let value = value.trim();
    let value = match value.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let end = value[1..].find(q)?;
            value[1..=end].to_owned()
        }
        _ => {
            let cut = value.find(" #").unwrap_or(value.len());
            value[..cut].trim_end().to_owned()
        }
    };
    Some((value, commented))
}

/// The entries of the list at one path of a values file, indexed by their
/// value: read once, so matching a thousand relays costs one pass.
pub struct Listing {
    by_url: HashMap<String, Vec<Entry>>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

impl Listing {
    /// Reads the list at `path` (keys joined by dots) as YAML, with the
    /// entries commented out around and between its items. Refused: a file
    /// that is not YAML, a path that is missing or is not a list of strings,
    /// a flow list (`[...]`), an entry listed twice.
    pub fn parse(text: &str, path: &str) -> Result<Listing, ListError> {
        let fix_path = "set `advertise.list` in the inventory to the keys down to the list, joined by dots (default `brig.turnStatic.v2`)";
        let root = crate::yaml::parse(text).map_err(|e| ListError {
            line: e.pos.map(|p| p.line),
            message: format!("not valid YAML: {}", e.message),
            help: "fix the file first: opsctl edits the advertised list only in a file that is valid YAML"
                .into(),
        })?;
        let mut node = &root;
        let mut key_line = 0u64;
        let mut walked: Vec<&str> = Vec::new();
        for key in path.split('.') {
            let here = if walked.is_empty() {
                "the top of the file".to_owned()
            } else {
                format!("`{}`", walked.join("."))
            };
            let crate::yaml::Value::Map(entries) = &node.value else {
                return Err(ListError::at(
                    node.pos.line,
                    format!("{here} is {}, not a mapping with `{key}`", node.value.describe()),
                    fix_path,
                ));
            };
            let Some((k, v)) = entries.iter().find(|(k, _)| k.name == key) else {
                return Err(ListError::at(
                    if walked.is_empty() {
                        node.pos.line
                    } else {
                        key_line
                    },
                    format!("{here} has no key `{key}`"),
                    fix_path,
                ));
            };
            key_line = k.pos.line;
            node = v;
            walked.push(key);
        }
        let items: &[crate::yaml::Node] = match &node.value {
            crate::yaml::Value::Seq(items) => items,
            // Every entry commented out: YAML sees nothing there.
            crate::yaml::Value::Null => &[],
            other => {
                return Err(ListError::at(
                    node.pos.line,
                    format!("`{path}` is {}, not a list of URLs", other.describe()),
                    fix_path,
                ));
            }
        };
        let lines = lines(text);
        let mut by_url: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut item_lines = Vec::new();
        let mut item_indent = None;
        for it in items {
            let line = usize::try_from(it.pos.line).unwrap_or(0).saturating_sub(1);
            let crate::yaml::Value::Str(url) = &it.value else {
                return Err(ListError::at(
                    it.pos.line,
                    format!("an entry of `{path}` is {}, not a URL", it.value.describe()),
                    "write each entry as `- turn:host:port` (or `turns:`, `stun:`)",
                ));
            };
            let text_line = lines.get(line).copied().unwrap_or("");
            let before = text_line
                .get(..usize::try_from(it.pos.col).unwrap_or(1).saturating_sub(1))
                .unwrap_or("");
            if !before.trim_end().ends_with('-') {
                return Err(ListError::at(
                    it.pos.line,
                    format!("`{path}` is a flow list (`[...]`), which cannot be edited line by line"),
                    "write the list with one `- url` per line",
                ));
            }
            // The edit works on whole lines: the line must hold this entry alone.
            if item(text_line).map(|(v, _)| v).as_deref() != Some(url.as_str()) {
                return Err(ListError::at(
                    it.pos.line,
                    format!("the entry `{url}` of `{path}` does not stand on a line of its own"),
                    "write the list with one `- url` per line",
                ));
            }
            item_indent.get_or_insert(indent(text_line));
            item_lines.push(line);
            by_url.entry(url.clone()).or_default().push(Entry {
                line,
                url: url.clone(),
                commented: false,
            });
        }
        // Entries commented out belong to the list from its key down to the
        // first line that is neither an entry, a comment nor blank.
        let key_index = usize::try_from(key_line).unwrap_or(0).saturating_sub(1);
        let key_indent = lines.get(key_index).map_or(0, |l| indent(l));
        for (i, line) in lines.iter().enumerate().skip(key_index + 1) {
            let t = line.trim();
            if item_lines.contains(&i) || t.is_empty() {
                continue;
            }
            if !t.starts_with('#') {
                break;
            }
            let ours = match item_indent {
                Some(n) => indent(line) == n,
                None => indent(line) > key_indent,
            };
            if let (true, Some((url, true))) = (ours, item(line)) {
                by_url.entry(url.clone()).or_default().push(Entry {
                    line: i,
                    url,
                    commented: true,
                });
            }
        }
        for (url, entries) in &by_url {
            if entries.len() > 1 {
                let mut at: Vec<usize> = entries.iter().map(|e| e.line + 1).collect();
                at.sort_unstable();
                return Err(ListError::at(
                    at[1] as u64,
                    format!(
                        "`{url}` is listed twice in `{path}` (lines {})",
                        at.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                    "keep one entry for it (commented out or not)",
                ));
            }
        }
        Ok(Listing { by_url })
    }

    /// Every entry, commented out or not, in file order.
    pub fn all(&self) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self.by_url.values().flatten().collect();
        entries.sort_by_key(|e| e.line);
        entries
    }

    /// Every line listing one of `urls`, in file order; a URL with no line is a problem.
    pub fn entries(&self, urls: &[String]) -> Result<Vec<Entry>, Vec<Problem>> {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for url in urls {
            match self.by_url.get(url) {
                Some(e) => found.extend(e.iter().cloned()),
                None => problems.push(Problem::Missing(url.clone())),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        found.sort_by_key(|e| e.line);
        Ok(found)
    }
}

/// [`Listing::entries`] for a single look-up in Wire's list.
#[cfg(test)]
pub fn entries(text: &str, urls: &[String]) -> Result<Vec<Entry>, Vec<Problem>> {
    Listing::parse(text, "brig.turnStatic.v2").unwrap().entries(urls)
}

pub fn state(entries: &[Entry]) -> State {
    let commented = entries.iter().filter(|e| e.commented).count();
    match commented {
        0 => State::Advertised,
        n if n == entries.len() => State::Unadvertised,
        _ => State::Partial,
    }
}

/// The file with the given entries commented out (`out == true`) or restored.
/// Entries already in the wanted state are left alone, so the edit is idempotent.
pub fn edit(text: &str, entries: &[Entry], out: bool) -> String {
    let mut result = String::with_capacity(text.len() + entries.len() * 2);
    for (i, line) in lines(text).iter().enumerate() {
        let Some(e) = entries.iter().find(|e| e.line == i) else {
            result.push_str(line);
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let (lead, body) = line.split_at(indent);
        match (out, e.commented) {
            (true, false) => {
                result.push_str(lead);
                result.push_str("# ");
                result.push_str(body);
            }
            (false, true) => {
                let rest = &body[1..];
                result.push_str(lead);
                result.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
            _ => result.push_str(line),
        }
    }
    result
}

/// A unified diff (3 lines of context) between two versions of a file whose
/// lines were changed in place, as [`edit`] does; empty when nothing changed.
pub fn diff(label: &str, old: &str, new: &str) -> String {
    let a = lines(old);
    let b = lines(new);
    debug_assert_eq!(a.len(), b.len(), "edits change lines in place");
    let changed: Vec<usize> = (0..a.len().min(b.len())).filter(|&i| a[i] != b[i]).collect();
    if changed.is_empty() {
        return String::new();
    }
    let mut out = format!("--- {label}\n+++ {label}\n");
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(3);
        let mut j = i;
        while j + 1 < changed.len() && changed[j + 1] <= changed[j] + 7 {
            j += 1;
        }
        let end = (changed[j] + 4).min(a.len());
        let n = end - start;
        let _ = writeln!(out, "@@ -{},{n} +{},{n} @@", start + 1, start + 1);
        let trim = |l: &str| l.trim_end_matches(['\n', '\r']).to_owned();
        let mut k = start;
        while k < end {
            if !changed[i..=j].contains(&k) {
                let _ = writeln!(out, " {}", trim(a[k]));
                k += 1;
                continue;
            }
            // A run of changed lines: all removals, then all additions.
            let run_end = (k..end).find(|x| !changed[i..=j].contains(x)).unwrap_or(end);
            for line in &a[k..run_end] {
                let _ = writeln!(out, "-{}", trim(line));
            }
            for line in &b[k..run_end] {
                let _ = writeln!(out, "+{}", trim(line));
            }
            k = run_end;
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "brig:\n  turnStatic:\n    v2:\n      - turn:a:3478 # a UDP\r\n      - \"turn:a:3478?transport=tcp\"\n      - turn:b:3478\n";

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn round_trip_keeps_every_byte() {
        let e = entries(FILE, &urls(&["turn:a:3478", "turn:a:3478?transport=tcp"])).unwrap();
        assert_eq!(e.len(), 2);
        let out = edit(FILE, &e, true);
        assert!(out.contains("      # - turn:a:3478 # a UDP\r\n"));
        assert!(out.contains("      # - \"turn:a:3478?transport=tcp\"\n"));
        assert!(out.contains("      - turn:b:3478\n"));
        let again = entries(&out, &urls(&["turn:a:3478", "turn:a:3478?transport=tcp"])).unwrap();
        assert_eq!(state(&again), State::Unadvertised);
        assert_eq!(edit(&out, &again, true), out, "taking out twice changes nothing");
        assert_eq!(edit(&out, &again, false), FILE);
    }

    #[test]
    fn missing_urls_are_problems() {
        let err = entries(FILE, &urls(&["turn:c:3478"])).unwrap_err();
        assert_eq!(err, vec![Problem::Missing("turn:c:3478".into())]);
    }

    fn refused(text: &str) -> ListError {
        Listing::parse(text, "brig.turnStatic.v2").err().expect("refused")
    }

    #[test]
    fn only_the_list_at_its_path_is_the_advertised_list() {
        // The same URL under `v1:`, under another service and in a comment
        // elsewhere: none of them is an entry.
        let text = "brig:\n  turnStatic:\n    v1:\n      - turn:a:3478\n    v2:\n      # dc1\n      - turn:a:3478 # a\n      # - turn:b:3478\n    other: 1\n# - turn:b:3478\ncoturn:\n  urls:\n    - turn:b:3478\n";
        let l = Listing::parse(text, "brig.turnStatic.v2").unwrap();
        let a = l.entries(&urls(&["turn:a:3478"])).unwrap();
        assert_eq!(
            a.iter().map(|e| (e.line, e.commented)).collect::<Vec<_>>(),
            [(6, false)]
        );
        let b = l.entries(&urls(&["turn:b:3478"])).unwrap();
        assert_eq!(
            b.iter().map(|e| (e.line, e.commented)).collect::<Vec<_>>(),
            [(7, true)]
        );
        // Taking a out and back gives the file back byte for byte, and the
        // decoys stay as they were.
        let out = edit(text, &a, true);
        assert!(out.contains("    v1:\n      - turn:a:3478\n"), "{out}");
        assert!(out.contains("      # - turn:a:3478 # a\n"), "{out}");
        let back = Listing::parse(&out, "brig.turnStatic.v2")
            .unwrap()
            .entries(&urls(&["turn:a:3478"]))
            .unwrap();
        assert_eq!(edit(&out, &back, false), text);
        assert_eq!(listed(text, "brig.turnStatic.v2"), ["turn:a:3478"]);
    }

    #[test]
    fn a_list_whose_entries_are_all_commented_out_is_still_the_list() {
        let text = "brig:\n  turnStatic:\n    v2:\n      # - turn:a:3478\n      # - turn:b:3478\n  next: 1\n";
        let l = Listing::parse(text, "brig.turnStatic.v2").unwrap();
        let e = l.entries(&urls(&["turn:a:3478", "turn:b:3478"])).unwrap();
        assert_eq!(state(&e), State::Unadvertised);
    }

    #[test]
    fn what_cannot_be_edited_safely_is_refused_with_its_line() {
        let e = refused("brig: [\n");
        assert!(e.message.starts_with("not valid YAML"), "{e:?}");
        assert_eq!(
            refused("brig:\n  turnStatic:\n    v1: []\n"),
            ListError::at(
                2,
                "`brig.turnStatic` has no key `v2`",
                "set `advertise.list` in the inventory to the keys down to the list, joined by dots (default `brig.turnStatic.v2`)"
            )
        );
        assert_eq!(
            refused("brig:\n  turnStatic:\n    v2: 3\n").message,
            "`brig.turnStatic.v2` is a number, not a list of URLs"
        );
        assert_eq!(
            refused("brig:\n  turnStatic:\n    v2:\n      - 3\n").line,
            Some(4)
        );
        let flow = refused("brig:\n  turnStatic:\n    v2: [\n      turn:a:3478,\n      turn:b:3478]\n");
        assert_eq!(
            flow.message,
            "`brig.turnStatic.v2` is a flow list (`[...]`), which cannot be edited line by line"
        );
        assert_eq!(flow.line, Some(4));
        let twice = refused("brig:\n  turnStatic:\n    v2:\n      - turn:a:3478\n      # - turn:a:3478\n");
        assert_eq!(
            twice.message,
            "`turn:a:3478` is listed twice in `brig.turnStatic.v2` (lines 4 and 5)"
        );
        assert_eq!(twice.line, Some(5));
    }

    /// Hundreds of mangled copies of the seed runbook's values file: the
    /// reader never panics, and wherever it accepts a file, taking any one
    /// entry out and putting it back gives that file back byte for byte.
    #[test]
    fn mangled_values_files_never_break_the_round_trip() {
        let seed = include_str!("../../examples/values/wire-server/values.yaml");
        let pieces = ["- ", "# ", "\n", "  ", "[", "]", ",", ":", "\"", "turn:x:1", "\t"];
        let mut seedval: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seedval = seedval
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seedval >> 33) as usize % n.max(1)
        };
        let mut accepted = 0;
        for _ in 0..600 {
            let mut text = seed.to_owned();
            for _ in 0..1 + next(3) {
                let at = next(text.len());
                let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                if next(2) == 0 {
                    text.insert_str(at, pieces[next(pieces.len())]);
                } else {
                    let end = (at + 1 + next(4)).min(text.len());
                    let end = (end..=text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(text.len());
                    text.replace_range(at..end, "");
                }
            }
            let Ok(listing) = Listing::parse(&text, "brig.turnStatic.v2") else {
                continue;
            };
            accepted += 1;
            for entries in listing.by_url.values() {
                let out = edit(&text, entries, true);
                let again = Listing::parse(&out, "brig.turnStatic.v2")
                    .unwrap_or_else(|e| panic!("taking out {entries:?} broke the file: {e:?}\n{text}"));
                let urls: Vec<String> = entries.iter().map(|e| e.url.clone()).collect();
                let now = again.entries(&urls).unwrap();
                assert_eq!(state(&now), State::Unadvertised, "{text}");
                if entries.iter().all(|e| !e.commented) {
                    assert_eq!(edit(&out, &now, false), text, "round trip of {urls:?}");
                }
            }
        }
        assert!(accepted > 20, "only {accepted} mangled files were accepted");
    }

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let e = entries(FILE, &urls(&["turn:b:3478"])).unwrap();
        let d = diff("values.yaml", FILE, &edit(FILE, &e, true));
        assert_eq!(
            d,
            "--- values.yaml\n+++ values.yaml\n@@ -3,4 +3,4 @@\n     v2:\n       - turn:a:3478 # a UDP\n       - \"turn:a:3478?transport=tcp\"\n-      - turn:b:3478\n+      # - turn:b:3478\n"
        );
    }
}
