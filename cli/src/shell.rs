//! Quoting arguments for a POSIX shell.
//!
//! A remote command travels to sshd as one string that the login shell splits
//! again, so every argument is quoted when it needs to be, and only then: the
//! line shown in a plan is the line that is sent.

/// One argument, quoted if a shell would otherwise split, expand or
/// reinterpret it.
pub fn quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:,@%+=^".contains(c);
    // `=` in the first word would make it an assignment, and a leading `~`
    // or `#` means something; a lone `-` or `--` is fine.
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A whole command line.
pub fn join(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 && a.contains('=') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                quote(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        let argv: Vec<String> = [
            "etcdctl",
            "--endpoints=http://10.0.0.1:2379",
            "get",
            "",
            "it's",
            "a b",
            "$HOME",
            "{{.State}}",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            join(&argv),
            r#"etcdctl --endpoints=http://10.0.0.1:2379 get '' 'it'\''s' 'a b' '$HOME' '{{.State}}'"#
        );
        assert_eq!(join(&["A=1".to_owned()]), "'A=1'");
    }
}
