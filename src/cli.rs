//! Command line: one subcommand per operator task.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dashpush_proto::{PushAck, PushDirective, UrlTemplate};
use serde_json::json;

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
}

/// Parses the arguments and runs the chosen command.
pub fn run() -> ExitCode {
    match Cli::parse().command {
        Command::Directive { value } => directive(&value),
        Command::Expand { template } => expand(&template),
    }
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
