//! Exact rendered messages for bad inventories, bad playbooks and bad
//! command lines: what is wrong, where (file, line, field), and how to fix it.

use crate::util::{Scratch, opsctl};

/// Runs `inventory check` on an inventory with the given text.
fn check(inventory: &str) -> crate::util::Output {
    let scratch = Scratch::new();
    scratch.write(
        "values.yaml",
        "brig:\n  turnStatic:\n    v2:\n      - turn:t1:3478\n",
    );
    scratch.write("inventory.yaml", inventory);
    scratch.opsctl(&["inventory", "check"])
}

#[test]
fn unknown_field_suggests_the_known_name() {
    check(r#"sites:
  - name: dc1
    relays:
      - name: relay-1
        hots: 10.0.0.1
        kind: restund
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:5:9: sites[0].relays[0].hots: unknown field `hots`\n      help: did you mean `host`?\n",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    check(r#"defaults:
  relay:
    kind: restun
    drain:
      timeout: 12
      poll: 10 seconds
  ssh:
    port: twenty-two
    known_hosts: yes
sites:
  - name: dc1
    relays:
      - name: relay-1
        host: 10.0.0.1
      - name: relay-1
        host: 10.0.0.2
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 6 problems:\n  inventory.yaml:3:11: defaults.relay.kind: `restun` is not one of `restund`, `coturn`, `rtpengine`, `relayd`\n      help: did you mean `restund`?\n  inventory.yaml:5:16: defaults.relay.drain.timeout: cannot read duration: `12` has no unit; write e.g. `12s` or `12m`\n  inventory.yaml:6:13: defaults.relay.drain.poll: cannot read duration: `10 seconds` has an unknown unit ` seconds`; use ms, s, m, h or d\n  inventory.yaml:8:11: defaults.ssh.port: expected a port number, found a string\n  inventory.yaml:9:18: defaults.ssh.known_hosts: expected one of `strict`, `accept-new`, found a boolean\n  inventory.yaml:15:9: sites[0].relays[1]: duplicate node name `relay-1` (first used on line 13)\n      help: node names must be unique across relays and cluster members\n",
    );
}

#[test]
fn values_file_relay_without_urls() {
    check(r#"advertise:
  backend: values-file
  file: values.yaml
  apply: ./bin/prod-setup.sh
defaults:
  relay: {kind: restund}
sites:
  - name: dc1
    relays:
      - {name: relay-1, host: 10.0.0.1, urls: ['turn:t1:3478']}
      - {name: relay-2, host: 10.0.0.2}
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:11:9: sites[0].relays[1]: no `urls`: the `values-file` backend takes a relay out of the advertised list by its URLs\n      help: list the URLs the values file advertises for this relay under `urls:`\n",
    );
}

#[test]
fn cluster_reference_to_a_missing_member() {
    check(r#"sites:
  - name: dc2
    cluster:
      flavor: etcd
      seed: etcd-4
      members:
        - {name: etcd-1, host: 10.0.1.1}
        - {name: etcd-2, host: 10.0.1.2}
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:5:13: sites[0].cluster.seed: no member named `etcd-4` in this cluster\n      help: did you mean `etcd-1`?\n",
    );
}

#[test]
fn yaml_syntax_error() {
    check(r#"sites:
  - name: dc1
    relays: [
      {name: relay-1, host: 10.0.0.1
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:4:7: unclosed bracket '{' at line 4, column 7\n",
    );
}

#[test]
fn certificate_layout_conflict() {
    check(r#"sites:
  - name: dc1
    relays:
      - name: relay-1
        host: 10.0.0.1
        kind: coturn
        cert: {bundle: /etc/a.pem, key: /etc/a.key}
        stats: {via: coturn-cli}
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 2 problems:\n  inventory.yaml:7:15: sites[0].relays[0].cert: `bundle` cannot be combined with `cert`/`key`\n      help: use `bundle` (chain + key in one file) or `cert` and `key` (two files)\n  inventory.yaml:8:16: sites[0].relays[0].stats: the coturn admin CLI needs a password\n      help: set `password_env: VAR` or `password_file: PATH` (coturn's `cli-password`)\n",
    );
}

#[test]
fn passwords_are_never_written_in_the_inventory() {
    check(r#"sites:
  - name: dc1
    relays:
      - name: relay-1
        host: 10.0.0.1
        kind: coturn
        stats: {via: coturn-cli, password: hunter2}
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:7:34: sites[0].relays[0].stats.password: a password cannot be written in the inventory\n      help: use `password_env: VAR` (an environment variable) or `password_file: PATH`\n",
    );
}

#[test]
fn bad_urls_and_wrong_types() {
    check(r#"sites:
  - name: dc1
    defaults:
      min_healthy_relays: -1
    relays:
      - name: relay-1
        host: 10.0.0.1
        kind: relayd
        urls: [turn1.example.com:3478, 'turn:t1:3478?transport=sctp']
        stun_check: "yes"
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 4 problems:\n  inventory.yaml:4:27: sites[0].defaults.min_healthy_relays: -1 is too small for a count of relays (at least 0)\n  inventory.yaml:9:16: sites[0].relays[0].urls[0]: `turn1.example.com:3478` has scheme `turn1.example.com`; expected turn, turns, stun or stuns\n      help: write it as clients get it, e.g. `turn:turn1.example.com:3478?transport=tcp`\n  inventory.yaml:9:40: sites[0].relays[0].urls[1]: `turn:t1:3478?transport=sctp` has query `transport=sctp`; only `transport=udp` or `transport=tcp` is allowed\n      help: write it as clients get it, e.g. `turn:turn1.example.com:3478?transport=tcp`\n  inventory.yaml:10:21: sites[0].relays[0].stun_check: expected `true` or `false`, found a string\n",
    );
}

#[test]
fn clearwater_member_without_a_role_and_etcd_keys() {
    check(r#"sites:
  - name: dc1
    cluster:
      flavor: clearwater
      token: abc
      members:
        - {name: vellum-1, host: 10.0.1.1}
        - {name: sprout-1, host: 10.0.1.2, role: sprot}
"#).fails_with(
        2,
        "opsctl: error: inventory.yaml has 3 problems:\n  inventory.yaml:4:7: sites[0].cluster: `token` does not apply to a `clearwater` cluster\n      help: remove it, or check `flavor`\n  inventory.yaml:7:11: sites[0].cluster.members[0]: missing field `role`\n      help: one of bono, sprout, dime, homer, vellum, ellis\n  inventory.yaml:8:50: sites[0].cluster.members[1].role: `sprot` is not one of `bono`, `sprout`, `dime`, `homer`, `vellum`, `ellis`\n      help: did you mean `sprout`?\n",
    );
}

/// A small deployment whose playbooks may be overridden from `pb/`.
fn deployment() -> Scratch {
    let scratch = Scratch::new();
    scratch.write(
        "inventory.yaml",
        r#"playbooks: pb
defaults: {relay: {kind: relayd}}
sites:
  - name: dc1
    relays:
      - {name: relay-1, host: 10.0.0.1}
      - {name: relay-2, host: 10.0.0.2}
    cluster:
      flavor: etcd
      members:
        - {name: etcd-1, host: 10.0.1.1}
  - name: dc2
    relays:
      - {name: relay-3, host: 10.0.0.3}
"#,
    );
    std::fs::create_dir_all(scratch.0.join("pb")).unwrap();
    scratch
}

#[test]
fn a_malformed_playbook_gets_every_problem_located() {
    let d = deployment();
    d.write(
        "pb/restart-no-downtime.yaml",
        r#"name: restart-no-downtime
targets: relays
preflight: [reachable, min-heathy]
steps:
  - unadvertise
  - wait: drainned
  - servce: restart
  - run: [echo, "{nod}"]
  - run: [echo, "{host"]
  - relay-drain: on
  - advertise:
    when: restart
  - wait: {gate: drained, timeout: 5}
  - unadvertise: {now: true}
  - reboot: {}
    service: stop
"#,
    );
    d.opsctl(&["restart", "--no-downtime", "relay-1", "--dry-run"]).fails_with(
        2,
        "opsctl: error: pb/restart-no-downtime.yaml has 9 problems:
  pb/restart-no-downtime.yaml:3:24: preflight[1]: `min-heathy` is not one of `reachable`, `stats-readable`, `peers-healthy`, `min-healthy`, `advertised`, `bundle-valid`, `quorum-lost`, `seed-latest`, `keys-counted`, `config-present`, `cassandra-healthy`, `sprout-config`
      help: did you mean `min-healthy`?
  pb/restart-no-downtime.yaml:6:11: steps[1].wait: `drainned` is not one of `drained`, `service-up`, `stats-answer`, `stun-binding`, `unadvertised`, `advertised`, `ssh-down`, `new-boot`, `served-cert`, `member-healthy`, `cluster-healthy`, `keys-preserved`, `member-added`, `accepts-writes`, `monit-running`, `monit-stopped`, `config-synced`, `calls-held`, `calls-restored`, `calls-consistent`, `media-flows`, `ng-ping`
      help: did you mean `drained`?
  pb/restart-no-downtime.yaml:7:5: steps[2].servce: unknown field `servce`
      help: did you mean `service`?
  pb/restart-no-downtime.yaml:8:17: steps[3].run[1]: unknown placeholder `{nod}`
      help: did you mean `{node}`?
  pb/restart-no-downtime.yaml:9:17: steps[4].run[1]: unclosed placeholder in `{host`
      help: close it with `}`, or write `{{` for a literal brace
  pb/restart-no-downtime.yaml:10:18: steps[5].relay-drain: expected one of `enable`, `disable`, found a boolean
  pb/restart-no-downtime.yaml:13:36: steps[7].wait.timeout: cannot read duration: `5` has no unit; write e.g. `5s` or `5m`
  pb/restart-no-downtime.yaml:14:18: steps[8].unadvertise: `unadvertise` takes no settings
      help: write `- unadvertise`
  pb/restart-no-downtime.yaml:15:5: steps[9]: one step has several kinds: service, reboot
      help: split it into separate steps
",
    );
}

#[test]
fn a_playbook_that_is_not_yaml() {
    let d = deployment();
    d.write(
        "pb/restart.yaml",
        "name: restart\nsteps:\n  - advertise\n    when: restart\n",
    );
    d.opsctl(&["restart", "relay-1", "-n"]).fails_with(
        2,
        "opsctl: error: pb/restart.yaml has 1 problem:
  pb/restart.yaml:4:9: mapping values are not allowed in this context at line 4, column 9
",
    );
}

#[test]
fn a_cluster_playbook_on_the_wrong_flavor() {
    let d = deployment();
    d.write(
        "pb/recover-quorum-etcd.yaml",
        "name: recover-quorum-etcd\ntargets: cluster\nflavor: etcd\nphases:\n  - {title: x, on: masters, steps: [reboot]}\n",
    );
    d.opsctl(&["recover-quorum", "-n"]).fails_with(
        2,
        "opsctl: error: pb/recover-quorum-etcd.yaml has 1 problem:
  pb/recover-quorum-etcd.yaml:5:5: phases[0]: `on: masters` applies only to clearwater clusters
      help: use all, first or rest
",
    );
}

#[test]
fn an_unknown_node_gets_did_you_mean() {
    deployment().opsctl(&["restart", "relay-4", "-n"]).fails_with(
        2,
        "opsctl: error: no node `relay-4` in inventory.yaml\nhelp: did you mean `relay-1`?\n",
    );
}

#[test]
fn selecting_nothing_is_an_error() {
    deployment().opsctl(&["restart", "-n"]).fails_with(
        2,
        "opsctl: error: no relays selected\nhelp: name them (`opsctl restart relay-1 relay-2`), or use `--all` or `--site SITE`\n",
    );
}

#[test]
fn a_cluster_member_is_not_a_relay() {
    deployment().opsctl(&["reboot", "node", "etcd-1", "-n"]).fails_with(
        2,
        "opsctl: error: `etcd-1` is a member of dc1's config cluster, not a relay\nhelp: name relays here; `recover-quorum --site dc1` works on the cluster\n",
    );
}

#[test]
fn an_unknown_site_gets_did_you_mean() {
    deployment()
        .opsctl(&["restart", "--site", "dc3", "-n"])
        .fails_with(
            2,
            "opsctl: error: no site `dc3` in inventory.yaml\nhelp: did you mean `dc1`?\n",
        );
}

#[test]
fn a_missing_inventory_says_how_to_name_one() {
    deployment().opsctl(&["-i", "nope.yaml", "inventory", "check"]).fails_with(
        2,
        "opsctl: error: cannot read inventory nope.yaml: No such file or directory (os error 2); pass `--inventory FILE`, set OPSCTL_INVENTORY, or start from inventory.example.yaml\n",
    );
}

/// Refusals come from the deployment's state, not from a typo: exit status 1.
#[test]
fn the_last_relay_of_a_site_is_never_taken_out() {
    deployment().opsctl(&["restart", "--no-downtime", "relay-3", "-n"]).fails_with(
        1,
        "opsctl: error: refusing: taking one relay out of site `dc2` would leave 0 advertised relays (none besides the target), below its minimum of 1 (`min_healthy_relays`)\nhelp: put the missing relays back in service first, or lower `min_healthy_relays` in inventory.yaml\n",
    );
}

fn with_values(values: &str) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("values.yaml", values);
    scratch.write(
        "inventory.yaml",
        r#"advertise: {backend: values-file, file: values.yaml, list: v2, apply: ./bin/prod-setup.sh}
defaults: {relay: {kind: restund}}
sites:
  - name: dc1
    relays:
      - {name: relay-1, host: 10.0.0.1, urls: ['turn:t1:3478', 'turn:t1:3478?transport=tcp']}
      - {name: relay-2, host: 10.0.0.2, urls: ['turn:t2:3478']}
      - {name: relay-3, host: 10.0.0.3, urls: ['turn:t3:3478']}
"#,
    );
    scratch
}

#[test]
fn an_already_unadvertised_relay_is_refused() {
    with_values("v2:\n  # - turn:t1:3478\n  # - turn:t1:3478?transport=tcp\n  - turn:t2:3478\n  - turn:t3:3478\n")
        .opsctl(&["restart", "--no-downtime", "relay-1", "-n"])
        .fails_with(
            1,
            "opsctl: error: refusing: relay `relay-1` is not in the advertised list now: its entries on lines 2, 3 of values.yaml are commented out\nhelp: uncomment them if it should be in service, or leave `relay-1` out of this run\n",
        );
}

#[test]
fn the_values_file_must_list_every_url() {
    with_values("v2:\n  - turn:t1:3478\n  - turn:t1:3478?transport=tcp\n  - turn:t3:3478\n")
        .opsctl(&["restart", "--no-downtime", "relay-1", "-n"])
        .fails_with(
            2,
            "opsctl: error: the advertised list does not match the inventory:\n  relay `relay-2`: `turn:t2:3478` is not in the list `v2` of values.yaml\nhelp: make each relay's `urls` in inventory.yaml exactly the entries values.yaml lists for it\n",
        );
}

/// The values file is read as YAML: what cannot be edited line by line, or
/// is not the list at all, is refused with its line and what to do.
#[test]
fn a_values_file_that_cannot_be_edited_safely_is_refused() {
    let run = |values: &str| with_values(values).opsctl(&["restart", "--no-downtime", "relay-1", "-n"]);
    run("v2:\n  - \"turn:t1:3478\n").fails_with(
        2,
        "opsctl: error: values.yaml:2: not valid YAML: unclosed quote at line 2, column 5\nhelp: fix the file first: opsctl edits the advertised list only in a file that is valid YAML\n",
    );
    // An entry whose next line is indented further is one plain scalar to
    // YAML: the line holds more than the entry, so it is not edited.
    run("v2:\n  - turn:t1:3478\n   - turn:t2:3478\n").fails_with(
        2,
        "opsctl: error: values.yaml:2: the entry `turn:t1:3478 - turn:t2:3478` of `v2` does not stand on a line of its own\nhelp: write the list with one `- url` per line\n",
    );
    run("v2: [turn:t1:3478,\n  turn:t1:3478?transport=tcp, turn:t2:3478, turn:t3:3478]\n").fails_with(
        2,
        "opsctl: error: values.yaml:1: `v2` is a flow list (`[...]`), which cannot be edited line by line\nhelp: write the list with one `- url` per line\n",
    );
    run("v1:\n  - turn:t1:3478\n").fails_with(
        2,
        "opsctl: error: values.yaml:1: the top of the file has no key `v2`\nhelp: set `advertise.list` in the inventory to the keys down to the list, joined by dots (default `brig.turnStatic.v2`)\n",
    );
    run("v2:\n  - turn:t1:3478\n  - turn:t1:3478?transport=tcp\n  - turn:t2:3478\n  - turn:t3:3478\n  # - turn:t2:3478\n").fails_with(
        2,
        "opsctl: error: values.yaml:6: `turn:t2:3478` is listed twice in `v2` (lines 4 and 6)\nhelp: keep one entry for it (commented out or not)\n",
    );
}

/// A URL of relay-1 outside the list (under `v1:`, in another service's
/// settings) is never edited; only the entries of the list are.
#[test]
fn a_decoy_url_outside_the_list_is_left_alone() {
    let values = "v1:\n  - turn:t1:3478\nv2:\n  - turn:t1:3478\n  - turn:t1:3478?transport=tcp\n  - turn:t2:3478\n  - turn:t3:3478\nother:\n  urls:\n    - turn:t1:3478\n";
    let out = with_values(values).opsctl(&["-o", "json", "restart", "--no-downtime", "relay-1", "-n"]);
    out.success();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let diff = plan["sections"][0]["steps"][1]["edit"]["diff"].as_str().unwrap();
    assert_eq!(
        diff,
        "--- values.yaml\n+++ values.yaml\n@@ -1,8 +1,8 @@\n v1:\n   - turn:t1:3478\n v2:\n-  - turn:t1:3478\n-  - turn:t1:3478?transport=tcp\n+  # - turn:t1:3478\n+  # - turn:t1:3478?transport=tcp\n   - turn:t2:3478\n   - turn:t3:3478\n other:\n"
    );
}

/// A URL given to two relays would take the wrong relay out of the list.
#[test]
fn a_url_claimed_by_two_relays_is_refused() {
    check(
        r#"defaults: {relay: {kind: restund}}
sites:
  - name: dc1
    relays:
      - {name: relay-1, host: 10.0.0.1, urls: ['turn:turn1.example.com:3478']}
      - {name: relay-2, host: 10.0.0.2, urls: ['turn:turn1.example.com:3478']}
"#,
    )
    .fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:6:48: sites[0].relays[1].urls[0]: `turn:turn1.example.com:3478` is a URL of relay `relay-1` (line 5) and of relay `relay-2`\n      help: each URL clients receive belongs to one relay: give each relay only its own\n",
    );
}

/// A node that does not answer stops the run in its safety checks, before
/// anything changes (the address is loopback, where nothing listens on port 1).
#[test]
fn an_unreachable_target_is_refused_before_anything_changes() {
    let s = with_values(
        "v2:\n  - turn:t1:3478\n  - turn:t1:3478?transport=tcp\n  - turn:t2:3478\n  - turn:t3:3478\n",
    );
    let inv = std::fs::read_to_string(s.0.join("inventory.yaml")).unwrap();
    s.write(
        "inventory.yaml",
        &inv.replace(
            "defaults: {relay: {kind: restund}}",
            "defaults: {relay: {kind: restund}, ssh: {port: 1}}",
        )
        .replace("host: 10.0.0.1", "host: 127.0.0.1"),
    );
    s.opsctl(&["restart", "--no-downtime", "relay-1"]).fails_with(
        1,
        "             note: no `advertise.check` in the inventory: the advertised list is not confirmed from the clients' side\n    Checking 5 safety checks before any change\n     Refused restart-no-downtime: nothing was changed\nopsctl: error: refusing: safety check `reachable` failed; nothing was changed: cannot connect to `relay-1` (ssh://127.0.0.1:1): connection refused\nhelp: is sshd running there, and listening on port 1?\n",
    );
    assert_eq!(
        std::fs::read_to_string(s.0.join("values.yaml")).unwrap(),
        "v2:\n  - turn:t1:3478\n  - turn:t1:3478?transport=tcp\n  - turn:t2:3478\n  - turn:t3:3478\n"
    );
}

#[test]
fn clap_rejects_node_names_with_all() {
    let out = opsctl(&[
        "-i",
        "inventory.example.yaml",
        "restart",
        "relay-1",
        "--all",
        "-n",
    ]);
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("the argument '[NODE]...' cannot be used with '--all'"),
        "{}",
        out.dump()
    );
}

/// What reaches ssh or a command line as one argument is checked where it is
/// written: hosts, users, unit and container names, paths, command words.
#[test]
fn inventory_strings_that_would_reach_ssh_are_checked() {
    let out = check(
        r#"defaults: {relay: {kind: restund}}
sites:
  - name: dc1
    relays:
      - {name: relay-1, host: "10.1.0.11; rm -rf /"}
      - {name: relay-2, host: "-oProxyCommand=touch /tmp/x"}
      - {name: relay-3, host: "10.1.0.13:22"}
      - {name: relay-4, host: "fd00::14", ssh: {user: "-lroot", jump_host: "ops@[fd00::1]:2222"}}
      - {name: relay-5, host: relay5.example.com, service: {unit: "-x"}, ssh: {identity_file: "-F/tmp/cfg"}}
      - {name: relay-6, host: "[fd00::16]", service: {restart: ["--help"]}, ssh: {jump_host: "bastion:http"}}
"#,
    );
    out.fails_with(
        2,
        "opsctl: error: inventory.yaml has 8 problems:\n  inventory.yaml:5:31: sites[0].relays[0].host: `10.1.0.11; rm -rf /` is not a host: a hostname is letters, digits and `-` in dot-separated labels, none starting or ending with `-`\n      help: write a hostname (`relay1.example.com`), an IPv4 (`10.0.0.11`) or an IPv6 address (`fd00::11`); the port goes in `ssh.port`\n  inventory.yaml:6:31: sites[0].relays[1].host: `-oProxyCommand=touch /tmp/x` is not a host: it starts with `-`, so ssh or the command would read it as an option\n      help: write a hostname (`relay1.example.com`), an IPv4 (`10.0.0.11`) or an IPv6 address (`fd00::11`); the port goes in `ssh.port`\n  inventory.yaml:7:31: sites[0].relays[2].host: `10.1.0.13:22` is not a host: neither an IPv6 address nor a hostname (a port goes in `ssh.port`)\n      help: write a hostname (`relay1.example.com`), an IPv4 (`10.0.0.11`) or an IPv6 address (`fd00::11`); the port goes in `ssh.port`\n  inventory.yaml:8:55: sites[0].relays[3].ssh.user: `-lroot` is not a usable user name: it starts with `-`, so ssh or the command would read it as an option\n  inventory.yaml:9:67: sites[0].relays[4].service.unit: `-x` is not a usable unit name: it starts with `-`, so ssh or the command would read it as an option\n  inventory.yaml:9:95: sites[0].relays[4].ssh.identity_file: `-F/tmp/cfg` is not a usable path: it starts with `-`, so ssh or the command would read it as an option\n  inventory.yaml:10:64: sites[0].relays[5].service.restart: the command starts with `--help`, an option, not a program\n      help: put the program first\n  inventory.yaml:10:94: sites[0].relays[5].ssh.jump_host: `bastion:http` is not a jump host: `http` is not a port\n      help: write `[user@]host[:port]`, e.g. `ops@bastion.example.com:2222`\n",
    );
}

/// An override directory that is not there, or a playbook in it that
/// replaces nothing, would be ignored without a word: both are errors.
#[test]
fn playbook_overrides_that_would_be_ignored_are_errors() {
    let inv = "playbooks: ./my-playbooks\nsites:\n  - name: dc1\n    relays:\n      - {name: relay-1, host: 10.0.0.1, kind: restund}\n";
    check(inv).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:1:12: playbooks: the playbooks directory ./my-playbooks cannot be read: No such file or directory (os error 2)\n      help: create it, or remove `playbooks:` to use the built-in playbooks\n",
    );
    let scratch = Scratch::new();
    scratch.write("my-playbooks/restart-no-downtim.yaml", "name: x\n");
    scratch.write("my-playbooks/README.md", "notes\n");
    scratch.write("inventory.yaml", inv);
    scratch.opsctl(&["inventory", "check"]).fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:1:12: playbooks: ./my-playbooks/restart-no-downtim.yaml replaces no built-in playbook, so it would never be used\n      help: did you mean `restart-no-downtime.yaml`? name it after the one it replaces: restart-no-downtime.yaml, restart.yaml, reboot-node.yaml, renew-cert.yaml, recover-quorum-clearwater.yaml, recover-quorum-etcd.yaml\n",
    );
}

/// A minimum no site can keep is found by `inventory check`, not first by a run.
#[test]
fn a_minimum_above_the_relays_of_a_site_is_an_error() {
    check(
        "defaults: {relay: {kind: restund}, min_healthy_relays: 3}\nsites:\n  - name: dc1\n    relays:\n      - {name: relay-1, host: 10.0.0.1}\n      - {name: relay-2, host: 10.0.0.2}\n",
    )
    .fails_with(
        2,
        "opsctl: error: inventory.yaml has 1 problem:\n  inventory.yaml:3:5: sites[0]: site `dc1` has 2 relays but `min_healthy_relays` is 3: no relay could ever be taken out of service\n      help: lower `min_healthy_relays` (in the site's `defaults:` or the file's) to at most 2\n",
    );
}

/// Limits and encodings, said in words with where.
#[test]
fn limits_and_encodings_are_said_in_words() {
    let scratch = Scratch::new();
    let deep = format!("a: {}{}\n", "[".repeat(70), "]".repeat(70));
    scratch.write("deep.yaml", &deep);
    scratch.opsctl(&["-i", "deep.yaml", "inventory", "check"]).fails_with(
        2,
        "opsctl: error: deep.yaml has 1 problem:\n  deep.yaml:1:67: nested deeper than 64 levels of lists and mappings\n",
    );
    scratch.write("docs.yaml", "a: 1\n---\nb: 2\n");
    scratch.opsctl(&["-i", "docs.yaml", "inventory", "check"]).fails_with(
        2,
        "opsctl: error: docs.yaml has 1 problem:\n  docs.yaml:2:1: holds more than one YAML document (a `---` line): an input of opsctl is one document\n",
    );
    std::fs::write(scratch.0.join("latin1.yaml"), b"sites:\n  - name: caf\xe9\n").unwrap();
    scratch.opsctl(&["-i", "latin1.yaml", "inventory", "check"]).fails_with(
        2,
        "opsctl: error: cannot read inventory latin1.yaml: not UTF-8 text: line 2, byte 14 of the line (byte 21 of the file)\n",
    );
    scratch.opsctl(&["-i", "/dev/zero", "inventory", "check"]).fails_with(
        2,
        "opsctl: error: cannot read inventory /dev/zero: larger than 16 MiB, far more than an input of opsctl holds\n",
    );
    check("defaults: {ssh: {port: 70000, password: x}}\nsites:\n  - name: dc1\n    relays:\n      - {name: r, host: h, kind: coturn, stats: {via: coturn-cli, password: y}}\n")
        .fails_with(
            2,
            "opsctl: error: inventory.yaml has 3 problems:\n  inventory.yaml:1:24: defaults.ssh.port: 70000 is too large for a port number (at most 65535)\n  inventory.yaml:1:31: defaults.ssh.password: a password cannot be written in the inventory\n      help: opsctl logs in with a key: set `identity_file`, or load the key with `ssh-add`\n  inventory.yaml:5:67: sites[0].relays[0].stats.password: a password cannot be written in the inventory\n      help: use `password_env: VAR` (an environment variable) or `password_file: PATH`\n",
        );
}

#[test]
fn a_lock_setting_that_is_not_one_is_located() {
    let out = check(
        r#"lock:
  backend: zookeeper
  lease: forever
  dir: var/lib/opsctl
sites:
  - name: dc1
    relays:
      - name: relay-1
        host: 10.0.0.1
        kind: restund
"#,
    );
    assert_eq!(out.code, 2, "{}", out.dump());
    for want in [
        "inventory.yaml:2:12: lock.backend: unknown lock backend `zookeeper`",
        "help: use `auto` (an etcd lease where the site has an etcd cluster, else the nodes) or `nodes`",
        "inventory.yaml:3:10: lock.lease: cannot read duration",
        "inventory.yaml:4:8: lock.dir: `var/lib/opsctl` is not an absolute path",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.dump());
    }
}

/// `lock: {backend: nodes}` keeps a site with an etcd cluster on the node
/// lock; left out, the site locks in its cluster.
#[test]
fn the_lock_backend_is_chosen_by_the_inventory() {
    let root = crate::util::root();
    // The example, its values file named from the scratch directory.
    let example = std::fs::read_to_string(root.join("inventory.example.yaml"))
        .unwrap()
        .replace("file: examples/", &format!("file: {}/examples/", root.display()));
    let scratch = Scratch::new();
    let plan = |inv: &str| {
        scratch.write("inventory.yaml", inv);
        scratch.opsctl(&["-n", "restart", "--no-downtime", "relay-5"])
    };
    let etcd = plan(&example);
    etcd.success();
    assert!(
        etcd.stdout
            .contains("lock: site dc2, the key /opsctl/locks/dc2 in its etcd cluster, under a lease of 60s"),
        "{}",
        etcd.dump()
    );
    let nodes = plan(&format!("lock: {{backend: nodes, lease: 10s}}\n{example}"));
    nodes.success();
    assert!(
        nodes
            .stdout
            .contains("lock: site dc2, in /var/lib/opsctl/locks/dc2 on each node"),
        "{}",
        nodes.dump()
    );
}
