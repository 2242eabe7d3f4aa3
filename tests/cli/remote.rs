//! The remote layer against lab nodes: exit statuses, errors that say which
//! node, command, status and stderr, and atomic uploads.

use std::time::Duration;

use opsctl::command::Command;
use opsctl::inventory;
use opsctl::remote::{ExecError, Node, Remote, UploadCommands};

use crate::lab::Lab;
use crate::util::Scratch;

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The lab's nodes as the remote layer sees them, read from a lab inventory.
fn nodes(lab: &Lab, scratch: &Scratch) -> Vec<Node> {
    let path = scratch.write("inventory.yaml", &lab.inventory("relayd", ""));
    let inv = inventory::load(&path).unwrap();
    inv.relays()
        .map(|r| Node {
            name: r.name.clone(),
            access: r.access.clone(),
        })
        .collect()
}

fn cmd(n: &Node, argv: &[&str]) -> opsctl::command::Command {
    Command::remote(&n.name, &n.access, argv.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn failures_name_node_command_status_and_stderr() {
    let lab = Lab::start(1).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let scratch = Scratch::new();
    let n = &nodes(&lab, &scratch)[0];
    let remote = Remote::new(scratch.0.join("ctl")).unwrap();
    block(async {
        let t = Duration::from_secs(10);
        let ok = remote
            .run(n, &cmd(n, &["echo", "it's one argument"]), t)
            .await
            .unwrap();
        assert_eq!(ok.stdout, "it's one argument\n");
        let e = remote
            .run(n, &cmd(n, &["sh", "-c", "echo no such unit >&2; exit 5"]), t)
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Failed { code: 5, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "`sh -c 'echo no such unit >&2; exit 5'` failed on `node-1` with exit status 5: no such unit"
        );
        // Exit status 255 is a command's own status while the connection holds.
        let e = remote
            .run(n, &cmd(n, &["sh", "-c", "exit 255"]), t)
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Failed { code: 255, .. }), "{e:?}");
        let e = remote
            .run(n, &cmd(n, &["sleep", "20"]), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`sleep 20` on `node-1` did not finish within 1s; it was stopped"
        );
        remote.close().await;
    });
}

#[test]
fn a_node_that_is_down_is_a_connection_error_not_a_command_failure() {
    let mut lab = Lab::start(1).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let scratch = Scratch::new();
    let n = nodes(&lab, &scratch).remove(0);
    let remote = Remote::new(scratch.0.join("ctl")).unwrap();
    block(async {
        remote
            .run(&n, &cmd(&n, &["true"]), Duration::from_secs(10))
            .await
            .unwrap();
    });
    lab.stop_sshd(0);
    block(async {
        // The open master notices the lost connection; a fresh one is refused.
        let e = remote
            .run(&n, &cmd(&n, &["true"]), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ExecError::Disconnected { .. } | ExecError::Connect { .. }),
            "{e:?}"
        );
        let e = remote
            .run(&n, &cmd(&n, &["true"]), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("connection refused"), "{e}");
        remote.close().await;
    });
}

#[test]
fn uploads_are_atomic_private_checked_and_keep_a_backup() {
    let lab = Lab::start(1).unwrap_or_else(|why| panic!("cannot start the lab: {why}"));
    let scratch = Scratch::new();
    let n = &nodes(&lab, &scratch)[0];
    let remote = Remote::new(scratch.0.join("ctl")).unwrap();
    let target = lab.nodes[0].dir.join("relay.pem");
    std::fs::write(&target, "old\n").unwrap();
    let to = target.display().to_string();
    let (temp, backup) = (format!("{to}.opsctl-t.tmp"), format!("{to}.opsctl-t"));
    block(async {
        let up = UploadCommands::new(&n.name, &n.access, &to, &temp, Some(&backup), Some("600"));
        remote
            .upload(n, b"-----BEGIN PRIVATE KEY-----\nnew\n", &up)
            .await
            .unwrap();
        let back = remote
            .run(n, &cmd(n, &["cat", "--", &to]), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(back.stdout, "-----BEGIN PRIVATE KEY-----\nnew\n");
        remote.close().await;
    });
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old\n");
    assert!(
        !std::path::Path::new(&temp).exists(),
        "the temporary file was renamed away"
    );
}
