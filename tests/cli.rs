//! The command line (DESIGN §4): `--help`, `--version`, and one clear line with exit
//! code 2 for a bad flag.

mod common;

use common::{assert_refused, free_port, run_clb as run};

/// A valid HTTP listener on a free port, so only the flag under test is wrong.
fn valid_listener() -> String {
    format!("http:{}:http:80", free_port("127.0.0.1"))
}

/// clb exits 2 and prints exactly one line on stderr, `clb: ...`, naming every
/// string in `mentions`.
fn refused(args: &[&str], mentions: &[&str]) {
    assert_refused(args, mentions);
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let r = run(&["--help"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {:?}", r.stderr);
    for flag in [
        "--listener",
        "--instance",
        "--zones",
        "--cross-zone",
        "--idle-timeout",
        "--bind",
        "--workers",
        "--max-connections",
        "--api",
        "--name",
        "--help",
        "--version",
    ] {
        assert!(r.stdout.contains(flag), "--help does not mention {flag}");
    }
}

/// The flags `text` (part of the help) describes: the `--word`s of each option column
/// (a line starting with `-`, up to the two spaces before its description), in order.
fn flags_named(text: &str) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    let columns = text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split("  ").next().unwrap_or(""));
    for word in columns.flat_map(|c| c.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))) {
        let Some(name) = word.strip_prefix("--") else {
            continue;
        };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            let flag = format!("--{name}");
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    flags
}

/// Issue 12: `--help` listed seven working flags as "not supported yet". Whatever flags
/// are added, the help must only list as not supported a flag clb refuses as such, and
/// every flag it lists elsewhere must be one clb takes. Each flag is given alone with
/// the value `x` (and no listener, so nothing starts): clb's answer says whether it
/// knows the flag ("unknown option"), refuses it as not supported, or took it.
#[test]
fn help_lists_as_unsupported_only_flags_clb_refuses_as_such() {
    let help = run(&["--help"]).stdout;
    // The unsupported section: from a heading that says so to the next empty line.
    let mut unsupported_text = String::new();
    let mut in_section = false;
    for line in help.lines() {
        if line.to_ascii_lowercase().contains("not supported") && !line.starts_with(' ') {
            in_section = true;
            continue;
        }
        if in_section && line.trim().is_empty() {
            in_section = false;
        }
        if in_section {
            unsupported_text.push_str(line);
            unsupported_text.push('\n');
        }
    }
    let unsupported = flags_named(&unsupported_text);
    let all = flags_named(&help);
    assert!(all.len() > 20, "too few flags found in the help:\n{help}");
    for flag in all {
        if flag == "--help" || flag == "--version" {
            continue;
        }
        let r = run(&[&format!("{flag}=x")]);
        let said = r.stderr.to_ascii_lowercase();
        assert!(
            !said.contains("unknown option"),
            "--help names {flag}, which clb does not know: {:?}",
            r.stderr
        );
        let refused_as_unsupported = said.contains("not supported");
        assert_eq!(
            unsupported.contains(&flag),
            refused_as_unsupported,
            "{flag}: listed as not supported in --help: {}; clb says {:?}",
            unsupported.contains(&flag),
            r.stderr
        );
    }
}

#[test]
fn version_prints_the_package_version_and_exits_0() {
    let r = run(&["--version"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {:?}", r.stderr);
    assert!(
        r.stdout.contains(env!("CARGO_PKG_VERSION")),
        "stdout: {:?}",
        r.stdout
    );
}

#[test]
fn idle_timeout_of_0_is_refused() {
    let l = valid_listener();
    refused(
        &["--listener", &l, "--api", "off", "--idle-timeout", "0"],
        &["--idle-timeout", "0"],
    );
}

#[test]
fn cross_zone_other_than_on_or_off_is_refused() {
    let l = valid_listener();
    refused(
        &["--listener", &l, "--api", "off", "--cross-zone", "maybe"],
        &["--cross-zone", "maybe"],
    );
}

#[test]
fn listener_port_0_is_refused() {
    refused(
        &["--listener", "http:0", "--api", "off"],
        &["--listener", "http:0"],
    );
}

#[test]
fn non_numeric_workers_is_refused() {
    let l = valid_listener();
    refused(
        &["--listener", &l, "--api", "off", "--workers", "x"],
        &["--workers", "x"],
    );
}

#[test]
fn malformed_instance_is_refused() {
    let l = valid_listener();
    refused(
        &[
            "--listener",
            &l,
            "--api",
            "off",
            "--instance",
            "no-equals-sign",
        ],
        &["--instance", "no-equals-sign"],
    );
}

#[test]
fn unknown_flag_is_refused() {
    refused(&["--no-such-flag"], &["no-such-flag"]);
}
