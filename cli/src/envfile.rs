//! Editing shell-style `KEY=value` files (`/etc/default/etcd`, Clearwater's
//! `local_config`) line by line: a key that is there is replaced in place,
//! one that is not is appended, every other line is kept as it was.

/// The file with `set` applied and the `unset` keys' lines removed.
pub fn edit(text: &str, set: &[(String, String)], unset: &[String]) -> String {
    let key_of = |line: &str| -> Option<String> {
        let l = line.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, _) = l.split_once('=')?;
        let k = k.trim();
        (!k.is_empty() && !k.starts_with('#') && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| k.to_owned())
    };
    let mut done: Vec<&str> = Vec::new();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let key = key_of(line.trim_end_matches(['\n', '\r']));
        match key {
            Some(k) if unset.contains(&k) => {}
            Some(k) => match set.iter().find(|(sk, _)| *sk == k) {
                Some((sk, v)) if !done.contains(&sk.as_str()) => {
                    out.push_str(&format!("{sk}={}\n", value(v)));
                    done.push(sk);
                }
                // A second line for a key already set would override it: drop it.
                Some(_) => {}
                None => out.push_str(line),
            },
            None => out.push_str(line),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (k, v) in set {
        if !done.contains(&k.as_str()) {
            out.push_str(&format!("{k}={}\n", value(v)));
        }
    }
    out
}

/// Quoted for the shell only when it has to be.
fn value(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:,@=+%".contains(c))
    {
        v.to_owned()
    } else {
        format!(
            "\"{}\"",
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_place_appends_and_removes() {
        let text = "# etcd\nETCD_NAME=old\nexport ETCD_DATA_DIR=/var/lib/etcd\nDAEMON_ARGS=\"\"\netcd_proxy=a\nETCD_NAME=dup\n";
        let set = vec![
            ("ETCD_NAME".to_owned(), "etcd-1".to_owned()),
            ("ETCD_DATA_DIR".to_owned(), "/srv/etcd".to_owned()),
            (
                "ETCD_INITIAL_CLUSTER".to_owned(),
                "a=http://h:2380,b=http://i:2380".to_owned(),
            ),
            ("NOTE".to_owned(), "two words".to_owned()),
        ];
        let out = edit(text, &set, &["etcd_proxy".to_owned()]);
        assert_eq!(
            out,
            "# etcd\nETCD_NAME=etcd-1\nETCD_DATA_DIR=/srv/etcd\nDAEMON_ARGS=\"\"\nETCD_INITIAL_CLUSTER=a=http://h:2380,b=http://i:2380\nNOTE=\"two words\"\n"
        );
        assert_eq!(edit(&out, &set, &[]), out, "editing twice changes nothing");
    }
}
