//! `opsctl completions` and `opsctl man`: what a user installs for their
//! shell and for `man`, checked to know every subcommand opsctl has.

use clap::CommandFactory;

use crate::util::{Scratch, opsctl};

/// Every subcommand `--help` lists, as the words typed (`["reboot", "node"]`).
fn subcommands() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut words = path.to_vec();
            words.push(sub.get_name().to_owned());
            out.push(words.clone());
            walk(sub, &words, out);
        }
    }
    let mut out = Vec::new();
    walk(&opsctl::args::Cli::command(), &[], &mut out);
    // The procedures and the commands around them, whatever else is added.
    for must in [
        "restart",
        "reboot node",
        "renew-cert",
        "recover-quorum",
        "status",
        "inventory check",
        "runs show",
        "resume",
        "lab up",
        "completions",
        "man",
    ] {
        assert!(
            out.iter().any(|w| w.join(" ") == must),
            "`opsctl {must}` is not a subcommand"
        );
    }
    out
}

#[test]
fn every_shell_s_completions_name_every_subcommand() {
    let all = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = opsctl(&["completions", shell]);
        out.success();
        for words in &all {
            let last = words.last().unwrap();
            assert!(
                out.stdout.contains(last.as_str()),
                "{shell} completions miss `{}`",
                words.join(" ")
            );
        }
    }
    let bad = opsctl(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{}", bad.dump());
    assert!(
        bad.stderr
            .contains("possible values: bash, elvish, fish, powershell, zsh"),
        "{}",
        bad.dump()
    );
}

/// The bash script, sourced into a real bash, completes what a user types.
#[test]
fn bash_completes_subcommands_and_flags_as_typed() {
    let script = opsctl(&["completions", "bash"]);
    script.success();
    let scratch = Scratch::new();
    let path = scratch.write("opsctl.bash", &script.stdout);
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _opsctl opsctl '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        got.sort();
        got
    };
    assert_eq!(
        complete("opsctl re"),
        ["reboot", "recover-quorum", "renew-cert", "restart", "resume"]
    );
    assert!(complete("opsctl restart --no").contains(&"--no-downtime".to_owned()));
    assert_eq!(complete("opsctl reboot n"), ["node"]);
}

#[test]
fn man_writes_a_page_per_subcommand_and_rewrites_them_whole() {
    let scratch = Scratch::new();
    let dir = scratch.0.join("man/man1");
    let out = scratch.opsctl(&["man", "--dir", "man/man1", "--output", "json"]);
    out.success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let listed: Vec<&str> = doc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mut want = vec!["opsctl.1".to_owned()];
    want.extend(subcommands().iter().map(|w| format!("opsctl-{}.1", w.join("-"))));
    for name in &want {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version = format!("\"opsctl {}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            text.lines()
                .any(|l| l.starts_with(".TH ") && l.contains(&version)),
            "{name} is not a man page of this opsctl"
        );
        assert!(
            listed.iter().any(|p| p.ends_with(&format!("/{name}"))),
            "{name} is not listed: {listed:?}"
        );
    }
    assert_eq!(listed.len(), want.len(), "{listed:?}");
    // Each page is its own command's: its usage and flags.
    let restart = std::fs::read_to_string(dir.join("opsctl-restart.1")).unwrap();
    assert!(
        restart.contains("opsctl restart") && restart.contains("no\\-downtime"),
        "{restart}"
    );
    let node = std::fs::read_to_string(dir.join("opsctl-reboot-node.1")).unwrap();
    assert!(
        node.contains("opsctl reboot node") && node.contains("dry\\-run"),
        "{node}"
    );

    // Again: the same pages, replaced, and nothing left beside them.
    scratch.opsctl(&["man", "--dir", "man/man1"]).success();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), want.len());
}
