//! URL lists, spec §6.1.5.
//!
//! A URL list is a comma-separated list of URI references (RFC 3986) with optional whitespace
//! around the commas, in push order. Duplicates are dropped, the first occurrence winning. Each
//! entry is resolved against the URL of the request that carried the directive
//! ([`UrlList::resolve`]). At most [`limits::MAX_LIST_ENTRIES`] entries of at most
//! [`limits::MAX_URL_LEN`] bytes each; one bad entry rejects the whole list (spec §6.1.5 (ours)).

use std::fmt;

use thiserror::Error;
use url::Url;

use crate::limits;

/// A validated, duplicate-free list of URI references (spec §6.1.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UrlList {
    entries: Vec<String>,
}

/// Why a URL list (or one URL of a template expansion) was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UrlListError {
    /// The list has no entries.
    #[error("URL list is empty")]
    Empty,
    /// The list has more entries than allowed.
    #[error("URL list has more than {max} entries")]
    TooManyEntries {
        /// The cap that was exceeded.
        max: usize,
    },
    /// An entry is empty (two commas in a row, or a trailing comma).
    #[error("URL list entry {index} is empty")]
    EmptyEntry {
        /// Zero-based position of the entry.
        index: usize,
    },
    /// An entry is longer than allowed.
    #[error("URL list entry {index} is {len} bytes long (max {max})")]
    EntryTooLong {
        /// Zero-based position of the entry.
        index: usize,
        /// Its length in bytes.
        len: usize,
        /// The cap that was exceeded.
        max: usize,
    },
    /// An entry has a byte that may not appear in a URI reference.
    #[error("URL list entry {index} has invalid character {byte:#04x}")]
    InvalidChar {
        /// Zero-based position of the entry.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// An entry has a `%` not followed by two hex digits.
    #[error("URL list entry {index} has a bad percent-encoding")]
    BadPercentEncoding {
        /// Zero-based position of the entry.
        index: usize,
    },
    /// An entry does not resolve against the base URL.
    #[error("URL list entry {index} does not resolve: {reason}")]
    Unresolvable {
        /// Zero-based position of the entry.
        index: usize,
        /// What the URL parser said.
        reason: String,
    },
}

impl UrlList {
    /// Builds a list from entries, validating each and dropping duplicates.
    pub fn new<I, S>(entries: I) -> Result<Self, UrlListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<String> = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            if index >= limits::MAX_LIST_ENTRIES {
                return Err(UrlListError::TooManyEntries {
                    max: limits::MAX_LIST_ENTRIES,
                });
            }
            let entry = entry.as_ref();
            validate_entry(index, entry)?;
            if !out.iter().any(|e| e == entry) {
                out.push(entry.to_owned());
            }
        }
        if out.is_empty() {
            return Err(UrlListError::Empty);
        }
        Ok(Self { entries: out })
    }

    /// Parses the textual form: entries separated by commas, whitespace around them ignored.
    pub fn parse(s: &str) -> Result<Self, UrlListError> {
        if s.trim().is_empty() {
            return Err(UrlListError::Empty);
        }
        Self::new(s.split(',').map(|e| e.trim_matches(is_ows)))
    }

    /// The entries, in push order.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Resolves every entry against `base` (the URL of the request that carried the
    /// directive). Entries that resolve to the same URL are kept once, first wins.
    pub fn resolve(&self, base: &Url) -> Result<Vec<Url>, UrlListError> {
        let mut out: Vec<Url> = Vec::with_capacity(self.entries.len());
        for (index, entry) in self.entries.iter().enumerate() {
            let url = base.join(entry).map_err(|e| UrlListError::Unresolvable {
                index,
                reason: e.to_string(),
            })?;
            if !out.contains(&url) {
                out.push(url);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for UrlList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(entry)?;
        }
        Ok(())
    }
}

/// Optional whitespace (RFC 9110 OWS).
pub(crate) fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Checks one URI reference: non-empty, bounded, only RFC 3986 characters (plus `{` and `}`,
/// which URL templates may produce), no comma (the list separator), valid percent-encoding.
pub(crate) fn validate_entry(index: usize, entry: &str) -> Result<(), UrlListError> {
    if entry.is_empty() {
        return Err(UrlListError::EmptyEntry { index });
    }
    if entry.len() > limits::MAX_URL_LEN {
        return Err(UrlListError::EntryTooLong {
            index,
            len: entry.len(),
            max: limits::MAX_URL_LEN,
        });
    }
    check_uri_chars(index, entry)
}

/// Checks that `s` holds only URI-reference characters with valid percent-encoding. An empty
/// `s` passes (template literals may be empty).
pub(crate) fn check_uri_chars(index: usize, s: &str) -> Result<(), UrlListError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |o: usize| bytes.get(i + o).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(1) && hex(2)) {
                return Err(UrlListError::BadPercentEncoding { index });
            }
            i += 3;
            continue;
        }
        if !is_uri_char(b) {
            return Err(UrlListError::InvalidChar { index, byte: b });
        }
        i += 1;
    }
    Ok(())
}

/// RFC 3986 unreserved, gen-delims and sub-delims except `,`, plus `{` and `}`.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b';'
                | b'='
                | b'{'
                | b'}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses_and_resolves() {
        let list = UrlList::parse("seg-00006.m4s, seg-00007.m4s, ../audio/seg-00006.m4s").unwrap();
        assert_eq!(
            list.entries(),
            ["seg-00006.m4s", "seg-00007.m4s", "../audio/seg-00006.m4s"]
        );
        let base = Url::parse("http://edge.example/vod/video/seg-00005.m4s").unwrap();
        let urls: Vec<String> = list
            .resolve(&base)
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            urls,
            [
                "http://edge.example/vod/video/seg-00006.m4s",
                "http://edge.example/vod/video/seg-00007.m4s",
                "http://edge.example/vod/audio/seg-00006.m4s",
            ]
        );
        assert_eq!(
            list.to_string(),
            "seg-00006.m4s, seg-00007.m4s, ../audio/seg-00006.m4s"
        );
    }

    #[test]
    fn duplicates_dropped_first_wins() {
        let list = UrlList::parse("b,a ,\tb, c,a").unwrap();
        assert_eq!(list.entries(), ["b", "a", "c"]);
        let base = Url::parse("http://h/x/y").unwrap();
        let same = UrlList::parse("a, ./a, /x/a").unwrap();
        assert_eq!(same.resolve(&base).unwrap().len(), 1);
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(UrlList::parse(""), Err(UrlListError::Empty));
        assert_eq!(UrlList::parse("  "), Err(UrlListError::Empty));
        assert_eq!(
            UrlList::parse("a,,b"),
            Err(UrlListError::EmptyEntry { index: 1 })
        );
        assert_eq!(
            UrlList::parse("a,"),
            Err(UrlListError::EmptyEntry { index: 1 })
        );
        assert_eq!(
            UrlList::parse("a, b c"),
            Err(UrlListError::InvalidChar {
                index: 1,
                byte: b' '
            })
        );
        assert_eq!(
            UrlList::parse("a\"b"),
            Err(UrlListError::InvalidChar {
                index: 0,
                byte: b'"'
            })
        );
        assert_eq!(
            UrlList::parse("a%2"),
            Err(UrlListError::BadPercentEncoding { index: 0 })
        );
        assert_eq!(
            UrlList::parse("a%zz"),
            Err(UrlListError::BadPercentEncoding { index: 0 })
        );
        let long = "a".repeat(limits::MAX_URL_LEN + 1);
        assert_eq!(
            UrlList::parse(&long),
            Err(UrlListError::EntryTooLong {
                index: 0,
                len: long.len(),
                max: limits::MAX_URL_LEN
            })
        );
        let many = vec!["s"; limits::MAX_LIST_ENTRIES + 1].join(",");
        assert_eq!(
            UrlList::parse(&many),
            Err(UrlListError::TooManyEntries {
                max: limits::MAX_LIST_ENTRIES
            })
        );
        assert_eq!(
            UrlList::parse("%41%62"),
            Ok(UrlList {
                entries: vec!["%41%62".into()]
            })
        );
    }

    #[test]
    fn exactly_the_cap_is_accepted() {
        let entries: Vec<String> = (0..limits::MAX_LIST_ENTRIES)
            .map(|i| format!("s{i}"))
            .collect();
        assert_eq!(
            UrlList::parse(&entries.join(",")).unwrap().entries().len(),
            64
        );
    }

    #[test]
    fn unresolvable_entry_is_reported() {
        let base = Url::parse("http://h/").unwrap();
        let list = UrlList::parse("ok, http://[::1").unwrap();
        assert!(matches!(
            list.resolve(&base),
            Err(UrlListError::Unresolvable { index: 1, .. })
        ));
    }
}
