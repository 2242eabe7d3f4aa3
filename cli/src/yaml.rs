//! A located YAML tree.
//!
//! Inventories and playbooks are read in two steps: serde-saphyr parses the text
//! (with input budgets, duplicate-key errors and located syntax errors) into this
//! tree, where every node and key keeps its line and column; then the typed
//! readers in [`crate::reader`] walk the tree and collect every problem at once,
//! instead of stopping at the first one as a derived `Deserialize` would.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Spanned, UserMessageFormatter};

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
}

/// A YAML value with the position it was written at.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A mapping key with its position.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float,
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// What a user would call this kind of value, for "expected X, found Y".
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A syntax-level failure: the text is not YAML, or breaks a budget.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

const MAX_EVENTS: usize = 4_000_000;
const MAX_DEPTH: usize = 64;

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // Inventories of a few thousand nodes stay far below these; anything larger
    // is a mistake (or an attack) rather than a deployment.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: MAX_EVENTS,
            max_depth: MAX_DEPTH,
            max_documents: 1,
        },
    };
    let parsed: Result<Option<Spanned<RawValue>>, _> = serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(Some(root)) => Ok(convert(root)),
        Ok(None) => Ok(Node {
            value: Value::Map(Vec::new()),
            pos: Pos { line: 1, col: 1 },
        }),
        Err(e) => {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                col: l.column(),
            });
            let message = match e.without_snippet() {
                serde_saphyr::Error::Budget { breach, .. } => budget_words(breach),
                _ => clean_message(&e.without_snippet().render_with_formatter(&UserMessageFormatter)),
            };
            Err(SyntaxError { pos, message })
        }
    }
}

/// A budget that stopped the parser, in words: which limit, and what it is.
fn budget_words(b: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match b {
        B::Depth { .. } => format!("nested deeper than {MAX_DEPTH} levels of lists and mappings"),
        B::Documents { .. } => {
            "holds more than one YAML document (a `---` line): an input of opsctl is one document".into()
        }
        B::Events { .. } | B::Nodes { .. } => format!(
            "holds more than {MAX_EVENTS} YAML values, far more than any deployment; is it the right file?"
        ),
        B::Aliases { .. } | B::Anchors { .. } | B::AliasAnchorRatio { .. } => {
            "uses more YAML aliases (`*name`) than opsctl reads".into()
        }
        B::ScalarBytes { .. } | B::InputBytes { .. } => "holds more text than opsctl reads".into(),
        other => format!("breaks a limit opsctl sets on YAML input ({other:?})"),
    }
}

/// serde-saphyr's message leads with "error: line L column C:"; the caller puts
/// the location in front in its own format, so keep only the message itself.
fn clean_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let without_loc = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, msg)| msg).unwrap_or(rest),
        None => first,
    };
    without_loc.trim().to_owned()
}

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    Pos {
        line: s.referenced.line(),
        col: s.referenced.column(),
    }
}

fn convert(s: Spanned<RawValue>) -> Node {
    let pos = pos_of(&s);
    let value = match s.value {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Int(i) => Value::Int(i),
        RawValue::Float => Value::Float,
        RawValue::Str(s) => Value::Str(s),
        RawValue::Seq(items) => Value::Seq(items.into_iter().map(convert).collect()),
        RawValue::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        pos: pos_of(&k),
                        name: k.value,
                    };
                    (key, convert(v))
                })
                .collect(),
        ),
    };
    Node { value, pos }
}

/// What serde hands over, before positions are flattened into [`Node`].
enum RawValue {
    Null,
    Bool(bool),
    Int(i128),
    Float,
    Str(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<String>, Spanned<RawValue>)>),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawValue, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = a.next_element()? {
            out.push(item);
        }
        Ok(RawValue::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawValue, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = a.next_key::<Spanned<String>>()? {
            let value = a.next_value()?;
            out.push((key, value));
        }
        Ok(RawValue::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_positions_are_kept() {
        let n = parse("a: 1\nb:\n  - x: hello\n    y: 12h\n").unwrap();
        let Value::Map(top) = &n.value else { panic!() };
        let (bk, bv) = &top[1];
        assert_eq!((bk.name.as_str(), bk.pos.line), ("b", 2));
        let Value::Seq(items) = &bv.value else { panic!() };
        let Value::Map(item) = &items[0].value else {
            panic!()
        };
        assert_eq!(item[1].0.name, "y");
        assert_eq!(item[1].1.pos, Pos { line: 4, col: 8 });
    }

    #[test]
    fn duplicate_keys_are_located_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos.map(|p| p.line), Some(3));
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn empty_document_is_an_empty_mapping() {
        assert!(matches!(parse("").unwrap().value, Value::Map(ref m) if m.is_empty()));
    }
}
