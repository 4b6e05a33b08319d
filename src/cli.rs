//! Command line: one subcommand per operator task.

use std::process::ExitCode;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use dashpush_mpd::{Manifest, Resource};
use dashpush_proto::{PushAck, PushDirective, UrlTemplate};
use serde_json::{Value, json};
use url::Url;

/// dashpush: ISO/IEC 23009-6 server push and WebSocket delivery in front of DASH origins.
#[derive(Debug, Parser)]
#[command(name = "dashpush", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a push directive (spec §6.1.3) and print, as JSON, how the gateway reads it and the
    /// ack it would answer with if the directive cannot be honoured. Exits 1 if it is invalid.
    Directive {
        /// The header value, e.g. 'urn:mpeg:dash:fdh:2016:push-next;3'.
        value: String,
    },
    /// Expand a URL template (spec §6.1.6) and print one URL per line, as the gateway would
    /// (capped at 256). Exits 1 if the template is invalid.
    Expand {
        /// The template, e.g. 'seg-{%05d:10-20:5}.m4s'.
        template: String,
    },
    /// Show what the gateway would address in an MPD, as JSON: per Period, AdaptationSet and
    /// Representation its id, bandwidth, mime type, init URL and segment URLs (the first N, or
    /// for a dynamic MPD those available at `--at`), and with `--after` the segment after a URL.
    Mpd {
        /// The MPD file (`-` for standard input).
        file: PathBuf,
        /// The URL the MPD is served at (the root of the BaseURL chain).
        #[arg(long)]
        base: Url,
        /// For a dynamic MPD, the time to evaluate availability at (RFC 3339); default now.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Segments listed per Representation.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Print what this URL is and the segment that follows it.
        #[arg(long)]
        after: Option<Url>,
    },
}

/// Parses the arguments and runs the chosen command.
pub fn run() -> ExitCode {
    match Cli::parse().command {
        Command::Directive { value } => directive(&value),
        Command::Expand { template } => expand(&template),
        Command::Mpd {
            file,
            base,
            at,
            count,
            after,
        } => mpd(&file, &base, at, count, after.as_ref()),
    }
}

fn mpd(
    file: &PathBuf,
    base: &Url,
    at: Option<DateTime<Utc>>,
    count: usize,
    after: Option<&Url>,
) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dashpush: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let m = match Manifest::parse(&text, base) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("dashpush: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = at.unwrap_or_else(Utc::now);
    let url = |s: &dashpush_mpd::SegmentRef| m.segment_url(s).map(String::from);
    let periods: Vec<Value> = m
        .periods
        .iter()
        .enumerate()
        .map(|(pi, p)| {
            let sets: Vec<Value> = p
                .adaptation_sets
                .iter()
                .enumerate()
                .map(|(ai, a)| {
                    let reps: Vec<Value> = a
                        .representations
                        .iter()
                        .enumerate()
                        .map(|(ri, r)| {
                            let at = dashpush_mpd::RepRef {
                                period: pi,
                                adaptation_set: ai,
                                representation: ri,
                            };
                            let n = m.segment_count(at);
                            let segments: Vec<Value> = m
                                .available(at, now, count)
                                .iter()
                                .map(|s| json!(url(s)))
                                .collect();
                            json!({
                                "id": r.id,
                                "bandwidth": r.bandwidth,
                                "mime_type": r.mime_type,
                                "init": r.init.as_ref().map(Url::as_str),
                                "segment_count": (n < u64::MAX / 4).then_some(n),
                                "segments": segments,
                            })
                        })
                        .collect();
                    json!({
                        "id": a.id,
                        "content_type": a.content_type,
                        "segment_alignment": a.segment_alignment,
                        "representations": reps,
                    })
                })
                .collect();
            json!({ "id": p.id, "start": p.start, "end": p.end, "adaptation_sets": sets })
        })
        .collect();
    let mut out = json!({
        "url": base.as_str(),
        "type": if m.is_dynamic() { "dynamic" } else { "static" },
        "periods": periods,
        "warnings": m.warnings,
    });
    if m.is_dynamic() {
        out["at"] = json!(now.to_rfc3339());
    }
    if let Some(u) = after {
        out["after"] = match m.locate(u) {
            Some(Resource::Segment(s)) => json!({
                "url": u.as_str(),
                "resource": "segment",
                "representation": m.representation(s.rep).map(|r| r.id.clone()),
                "number": s.number,
                "time": s.time,
                "start": s.start,
                "duration": s.duration_secs,
                "next": m.next(&s, 1).first().and_then(url),
            }),
            Some(Resource::Init(r)) => json!({
                "url": u.as_str(),
                "resource": "init",
                "representation": m.representation(r).map(|r| r.id.clone()),
                "next": m.segment(r, 0).as_ref().and_then(url),
            }),
            None => json!({ "url": u.as_str(), "resource": null }),
        };
    }
    println!("{out:#}");
    ExitCode::SUCCESS
}

fn directive(value: &str) -> ExitCode {
    let (out, code) = match PushDirective::parse(value) {
        Ok(d) => {
            let honoured = !matches!(d, PushDirective::Unknown { .. });
            let out = json!({
                "valid": true,
                "push_type": d.push_type().label(),
                "canonical": d.to_string(),
                "ack_if_unsupported": PushAck::none().to_string(),
                "known_type": honoured,
            });
            (out, ExitCode::SUCCESS)
        }
        Err(e) => {
            let out = json!({
                "valid": false,
                "error": e.to_string(),
                "reason": e.reason(),
                "ack": PushAck::none().to_string(),
            });
            (out, ExitCode::FAILURE)
        }
    };
    println!("{out:#}");
    code
}

fn expand(template: &str) -> ExitCode {
    match UrlTemplate::parse(template) {
        Ok(t) => {
            for url in t.expand() {
                println!("{url}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dashpush: invalid template: {e}");
            ExitCode::FAILURE
        }
    }
}
