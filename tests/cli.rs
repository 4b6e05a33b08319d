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

fn fixtures(sub: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dashpush-mpd/tests/fixtures")
        .join(sub)
}

#[test]
fn mpd_lists_ffmpeg_segments_and_next() {
    let file = fixtures("ffmpeg/number/manifest.mpd");
    let (ok, out) = dashpush(&[
        "mpd",
        file.to_str().unwrap(),
        "--base",
        "http://edge.test/vod/manifest.mpd",
        "--count",
        "2",
        "--after",
        "http://edge.test/vod/chunk-stream1-00002.m4s",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "static");
    let rep = &v["periods"][0]["adaptation_sets"][0]["representations"][1];
    assert_eq!(rep["id"], "1");
    assert_eq!(rep["bandwidth"], 30000);
    assert_eq!(rep["init"], "http://edge.test/vod/init-stream1.m4s");
    assert_eq!(rep["segment_count"], 3);
    assert_eq!(
        rep["segments"],
        serde_json::json!([
            "http://edge.test/vod/chunk-stream1-00001.m4s",
            "http://edge.test/vod/chunk-stream1-00002.m4s"
        ])
    );
    assert_eq!(
        v["after"]["next"],
        "http://edge.test/vod/chunk-stream1-00003.m4s"
    );
    assert_eq!(v["after"]["number"], 2);
}

#[test]
fn mpd_works_on_every_fixture_and_rejects_a_broken_one() {
    let mut files = Vec::new();
    for sub in [
        "ffmpeg/number",
        "ffmpeg/timeline",
        "ffmpeg/time",
        "ffmpeg/list",
        "vendors",
    ] {
        for e in std::fs::read_dir(fixtures(sub)).unwrap() {
            let p = e.unwrap().path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("mpd" | "xml")) {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 25);
    for f in files {
        let broken = f.ends_with("incomplete.mpd");
        let (ok, out) = dashpush(&[
            "mpd",
            f.to_str().unwrap(),
            "--base",
            "http://edge.test/x/manifest.mpd",
            "--at",
            "2026-11-24T12:00:00Z",
        ]);
        assert_eq!(ok, !broken, "{}", f.display());
        if !broken {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(
                !v["periods"].as_array().unwrap().is_empty(),
                "{}",
                f.display()
            );
        }
    }
}

#[test]
fn check_config_accepts_the_example_and_names_the_bad_key() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dashpush.example.yaml");
    let (ok, out) = dashpush(&["check-config", "-c", example.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(": ok (listen 127.0.0.1:8080"), "{out}");
    let bad = std::env::temp_dir().join(format!("dashpush-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, "origin: http://o\ncache:\n  max_byts: 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dashpush"))
        .args(["check-config", "-c", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `max_byts`"), "{err}");
}
