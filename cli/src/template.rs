//! Placeholders in playbook arguments: `{host}`, `{data_dir}`, `--name={node}`.
//!
//! A template is one argument. Substitution never splits or joins arguments,
//! so an inventory value with spaces or quotes stays one argument, and nothing
//! is ever handed to a shell to re-parse. `{{` and `}}` are literal braces.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `known` lists the names a placeholder may use.
    pub fn parse(text: &str, known: &[&str]) -> Result<Template, (String, Option<String>)> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => {
                                return Err((
                                    format!("unclosed placeholder in `{text}`"),
                                    Some("close it with `}`, or write `{{` for a literal brace".into()),
                                ));
                            }
                        }
                    }
                    if !known.contains(&name.as_str()) {
                        let help = crate::suggest::closest(&name, known.iter().copied())
                            .map(|n| format!("did you mean `{{{n}}}`?"))
                            .unwrap_or_else(|| format!("placeholders here: {}", braces(known)));
                        return Err((format!("unknown placeholder `{{{name}}}`"), Some(help)));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => {
                    return Err((
                        format!("stray `}}` in `{text}`"),
                        Some("write `}}` for a literal brace".into()),
                    ));
                }
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The argument with every placeholder replaced. Every name was checked
    /// against the known set when parsing; the planner fills all of them.
    pub fn render(&self, vars: &BTreeMap<&str, String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => match vars.get(name.as_str()) {
                    Some(v) => out.push_str(v),
                    None => panic!("placeholder `{name}` has no value: the planner must fill it"),
                },
            }
        }
        out
    }
}

fn braces(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_one_argument() {
        let t = Template::parse("--name={node}", &["node"]).unwrap();
        let vars = BTreeMap::from([("node", "a b; rm -rf /".to_owned())]);
        assert_eq!(t.render(&vars), "--name=a b; rm -rf /");
        let lit = Template::parse("{{.State.Status}}", &[]).unwrap();
        assert_eq!(lit.render(&BTreeMap::new()), "{.State.Status}");
    }

    #[test]
    fn unknown_placeholders_are_refused_with_a_suggestion() {
        let (msg, help) = Template::parse("{hots}", &["host", "node"]).unwrap_err();
        assert_eq!(msg, "unknown placeholder `{hots}`");
        assert_eq!(help.as_deref(), Some("did you mean `{host}`?"));
        assert!(Template::parse("{host", &["host"]).is_err());
    }
}
