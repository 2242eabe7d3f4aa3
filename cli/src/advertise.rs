//! The advertised list: how a relay is taken out of, and put back into, the
//! list of relays clients receive.
//!
//! With the `values-file` backend the list lives in a Helm values file (brig's
//! `turnStatic.v2` in Wire's deployments). A relay is taken out by commenting
//! out exactly the lines of its URLs, `# ` inserted after the indentation, and
//! put back by removing that again: every other byte of the file, comments,
//! order, indentation, line endings, stays as it was, so a full round trip
//! gives the file back byte for byte.

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
    listing: Listing,
}

impl ValuesFile {
    /// The inventory's values file, or `None` for the other backends.
    pub fn load(inv: &Inventory) -> anyhow::Result<Option<ValuesFile>> {
        let Backend::ValuesFile { file, .. } = &inv.advertise.backend else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "cannot read the values file {} (`advertise.file` in {})",
                file.display(),
                inv.file
            )
        })?;
        Ok(Some(ValuesFile {
            path: file.clone(),
            label: file.display().to_string(),
            listing: Listing::parse(&text),
            text,
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
                    Problem::Missing(url) => {
                        format!("relay `{}`: `{url}` is not listed in {}", r.name, self.label)
                    }
                    Problem::FlowList { url, line } => format!(
                        "relay `{}`: `{url}` is in a flow list (`[...]`) on line {} of {}; write the list as one `- url` per line so entries can be commented out",
                        r.name,
                        line + 1,
                        self.label
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
    /// A URL of the relay appears nowhere in the file as a list entry.
    Missing(String),
    /// A URL appears inside a flow list (`[a, b]`), which cannot be commented out line by line.
    FlowList { url: String, line: usize },
}

/// Every entry the list holds now (not commented out), in file order: what
/// clients receive.
pub fn listed(text: &str) -> Vec<String> {
    lines(text)
        .iter()
        .filter_map(|l| item(l))
        .filter(|(_, commented)| !commented)
        .map(|(value, _)| value)
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

/// Every list entry of a values file, indexed by its value: read once, so
/// matching a thousand relays costs one pass over the file.
pub struct Listing {
    by_url: HashMap<String, Vec<Entry>>,
    /// Lines holding a flow list (`[a, b]`), kept to explain a URL found only there.
    flow_lines: Vec<(usize, String)>,
}

impl Listing {
    pub fn parse(text: &str) -> Listing {
        let mut by_url: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut flow_lines = Vec::new();
        for (i, line) in lines(text).iter().enumerate() {
            if let Some((value, commented)) = item(line) {
                by_url.entry(value.clone()).or_default().push(Entry {
                    line: i,
                    url: value,
                    commented,
                });
            } else if line.contains('[') && !line.trim_start().starts_with('#') {
                flow_lines.push((i, (*line).to_owned()));
            }
        }
        Listing { by_url, flow_lines }
    }

    /// Every line listing one of `urls`, in file order; a URL with no line is a problem.
    pub fn entries(&self, urls: &[String]) -> Result<Vec<Entry>, Vec<Problem>> {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for url in urls {
            match self.by_url.get(url) {
                Some(e) => found.extend(e.iter().cloned()),
                None => match self.flow_lines.iter().find(|(_, l)| l.contains(url.as_str())) {
                    Some((line, _)) => problems.push(Problem::FlowList {
                        url: url.clone(),
                        line: *line,
                    }),
                    None => problems.push(Problem::Missing(url.clone())),
                },
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        found.sort_by_key(|e| e.line);
        Ok(found)
    }
}

/// [`Listing::entries`] for a single look-up.
#[cfg(test)]
pub fn entries(text: &str, urls: &[String]) -> Result<Vec<Entry>, Vec<Problem>> {
    Listing::parse(text).entries(urls)
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
    fn missing_and_flow_list_urls_are_problems() {
        let err = entries(FILE, &urls(&["turn:c:3478"])).unwrap_err();
        assert_eq!(err, vec![Problem::Missing("turn:c:3478".into())]);
        let flow = "v2: [turn:a:3478, turn:b:3478]\n";
        let err = entries(flow, &urls(&["turn:a:3478"])).unwrap_err();
        assert_eq!(
            err,
            vec![Problem::FlowList {
                url: "turn:a:3478".into(),
                line: 0
            }]
        );
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
