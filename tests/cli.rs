//! The `dashpush` binary's protocol commands, run as a child process.

use std::process::Command;

fn dashpush(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dashpush"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn directive_valid_prints_canonical_form() {
    let (ok, out) = dashpush(&["directive", " URN:MPEG:DASH:FDH:2017:push-next ; 3 "]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["push_type"], "push-next");
    assert_eq!(v["canonical"], "urn:mpeg:dash:fdh:2016:push-next;3");
}

#[test]
fn directive_invalid_fails_with_push_none_ack_and_reason() {
    let (ok, out) = dashpush(&["directive", "urn:mpeg:dash:fdh:2016:push-next;abc"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["reason"], "bad_count");
    assert_eq!(v["ack"], "urn:mpeg:dash:fdh:2016:push-none");
}

#[test]
fn expand_prints_annex_f_example() {
    let (ok, out) = dashpush(&["expand", "seg-{%05d:10-20:5}.m4s"]);
    assert!(ok);
    assert_eq!(out, "seg-00010.m4s\nseg-00015.m4s\nseg-00020.m4s\n");
    let (ok, _) = dashpush(&["expand", "seg-{8-5}.m4s"]);
    assert!(!ok);
}
