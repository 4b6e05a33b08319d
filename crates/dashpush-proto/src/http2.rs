//! The HTTP/2 header binding, spec §7.
//!
//! The directive travels in the request header `accept-push-policy` (§7.1); the legacy name
//! `pushdirective`, seen in research clients, is accepted too. The ack goes in the response
//! header `push-policy`, or `pushack` when the client used `pushdirective` (§7.2). The generic
//! draft tokens of `accept-push-policy` are not DASH directives: `none` means push-none, and
//! `default`, `head` and `fast-load` are ignored (no push, no ack) (spec §7.1 (ours)).
//!
//! The same binding serves HTTP/1.1 requests: they get plain pull, with a push-none ack when
//! they sent a directive (Annex E).

use crate::directive::{DirectiveError, PushDirective};

/// Request header carrying the directive (spec §7.1).
pub const ACCEPT_PUSH_POLICY: &str = "accept-push-policy";
/// Legacy request header name accepted for the directive (spec §7.1).
pub const PUSH_DIRECTIVE_LEGACY: &str = "pushdirective";
/// Response header carrying the ack (spec §7.2).
pub const PUSH_POLICY: &str = "push-policy";
/// Legacy response header name, used when the client sent [`PUSH_DIRECTIVE_LEGACY`] (§7.2).
pub const PUSH_ACK_LEGACY: &str = "pushack";

/// Which request header carried the directive; decides the ack header's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectiveHeader {
    /// `accept-push-policy`.
    AcceptPushPolicy,
    /// `pushdirective`.
    Legacy,
}

impl DirectiveHeader {
    /// The request header's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AcceptPushPolicy => ACCEPT_PUSH_POLICY,
            Self::Legacy => PUSH_DIRECTIVE_LEGACY,
        }
    }

    /// The response header that carries the ack for a directive sent in this header.
    pub fn ack_name(self) -> &'static str {
        match self {
            Self::AcceptPushPolicy => PUSH_POLICY,
            Self::Legacy => PUSH_ACK_LEGACY,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case(ACCEPT_PUSH_POLICY) {
            Some(Self::AcceptPushPolicy)
        } else if name.eq_ignore_ascii_case(PUSH_DIRECTIVE_LEGACY) {
            Some(Self::Legacy)
        } else {
            None
        }
    }
}

/// What a request's headers say about push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestPolicy {
    /// No directive header: no push and no ack.
    Absent,
    /// A generic draft token other than `none` (`default`, `head`, `fast-load`, …): no push
    /// and no ack.
    Ignored,
    /// A directive header was present. An `Err` is answered with a push-none ack under
    /// `header.ack_name()`, and its [`DirectiveError::reason`] is counted.
    Directive {
        /// The header that carried it.
        header: DirectiveHeader,
        /// The parsed directive or why it was rejected.
        directive: Result<PushDirective, DirectiveError>,
    },
}

/// Reads the push policy from a request's header fields (`name`, raw value bytes).
///
/// More than one directive field (under either name) is rejected as
/// [`DirectiveError::MultipleDirectives`]; a value that is not UTF-8 as
/// [`DirectiveError::InvalidChar`].
pub fn request_policy<'a, I>(headers: I) -> RequestPolicy
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut found: Option<(DirectiveHeader, &[u8])> = None;
    let mut multiple = false;
    for (name, value) in headers {
        let Some(header) = DirectiveHeader::from_name(name) else {
            continue;
        };
        if found.is_some() {
            multiple = true;
            break;
        }
        found = Some((header, value));
    }
    let Some((header, value)) = found else {
        return RequestPolicy::Absent;
    };
    if multiple {
        return RequestPolicy::Directive {
            header,
            directive: Err(DirectiveError::MultipleDirectives),
        };
    }
    let text = match std::str::from_utf8(value) {
        Ok(text) => text,
        Err(e) => {
            let pos = e.valid_up_to();
            let byte = value.get(pos).copied().unwrap_or(0);
            return RequestPolicy::Directive {
                header,
                directive: Err(DirectiveError::InvalidChar { pos, byte }),
            };
        }
    };
    if header == DirectiveHeader::AcceptPushPolicy {
        let token = text.trim();
        if token.eq_ignore_ascii_case("none") {
            return RequestPolicy::Directive {
                header,
                directive: Ok(PushDirective::None),
            };
        }
        if ["default", "head", "fast-load"]
            .iter()
            .any(|t| token.eq_ignore_ascii_case(t))
        {
            return RequestPolicy::Ignored;
        }
    }
    RequestPolicy::Directive {
        header,
        directive: PushDirective::parse(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(h: &[(&str, &str)]) -> RequestPolicy {
        request_policy(h.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn standard_and_legacy_names() {
        assert_eq!(
            policy(&[
                ("accept", "*/*"),
                ("accept-push-policy", "urn:mpeg:dash:fdh:2016:push-next;3")
            ]),
            RequestPolicy::Directive {
                header: DirectiveHeader::AcceptPushPolicy,
                directive: Ok(PushDirective::Next(3))
            }
        );
        let RequestPolicy::Directive { header, directive } =
            policy(&[("PushDirective", "urn:mpeg:dash:fdh:2016:push-next;4")])
        else {
            panic!()
        };
        assert_eq!(header.ack_name(), "pushack");
        assert_eq!(directive, Ok(PushDirective::Next(4)));
        assert_eq!(DirectiveHeader::AcceptPushPolicy.ack_name(), "push-policy");
    }

    #[test]
    fn generic_draft_tokens() {
        assert_eq!(
            policy(&[("accept-push-policy", "None")]),
            RequestPolicy::Directive {
                header: DirectiveHeader::AcceptPushPolicy,
                directive: Ok(PushDirective::None)
            }
        );
        for t in ["default", "head", "fast-load"] {
            assert_eq!(policy(&[("accept-push-policy", t)]), RequestPolicy::Ignored);
        }
        // Generic tokens mean nothing under the legacy name.
        assert!(matches!(
            policy(&[("pushdirective", "none")]),
            RequestPolicy::Directive {
                directive: Err(_),
                ..
            }
        ));
        assert_eq!(policy(&[("accept", "*/*")]), RequestPolicy::Absent);
    }

    #[test]
    fn bad_input_is_a_typed_rejection() {
        assert_eq!(
            policy(&[
                ("accept-push-policy", "urn:mpeg:dash:fdh:2016:push-next;3"),
                ("pushdirective", "urn:mpeg:dash:fdh:2016:push-next;3")
            ]),
            RequestPolicy::Directive {
                header: DirectiveHeader::AcceptPushPolicy,
                directive: Err(DirectiveError::MultipleDirectives)
            }
        );
        let bytes: &[u8] = b"urn:\xff";
        assert_eq!(
            request_policy([("accept-push-policy", bytes)]),
            RequestPolicy::Directive {
                header: DirectiveHeader::AcceptPushPolicy,
                directive: Err(DirectiveError::InvalidChar { pos: 4, byte: 0xff })
            }
        );
    }
}
