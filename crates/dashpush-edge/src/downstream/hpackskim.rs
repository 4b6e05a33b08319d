//! Whether a client's HPACK encoder has put anything in the server's dynamic table (RFC 7541),
//! read off its header blocks without decoding them. Sans-IO.
//!
//! A connection parked again hands a new `h2` an empty decoder table (`h2idle`), so it may only
//! be parked when the table the client's encoder keeps in step with it is empty. [`Skim`] walks
//! every representation of the client's header blocks (§6): it reads the integers and string
//! lengths that delimit them and skips the strings, noting each literal with incremental
//! indexing (§6.2.1: an insertion) and each dynamic table size update (§6.3: an update to 0
//! empties the table, and while the maximum is 0 nothing inserted stays).

/// Where the walk is within a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At a representation's first byte.
    Start,
    /// Reading an integer's continuation bytes (§5.1): the value so far, the next shift, and
    /// what it is.
    Int { value: u64, shift: u32, of: Of },
    /// At a string's length byte (§5.2): the name's, or the value's.
    Len { name: bool },
    /// Skipping a string's bytes: how many, and whether a value string follows.
    Skip { left: u64, name: bool },
}

/// What an integer being read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Of {
    /// An index (an indexed field, or a literal's indexed name): nothing follows but, for a
    /// literal, its value.
    Index { literal: bool },
    /// A dynamic table size update.
    SizeUpdate,
    /// A string's length.
    Len { name: bool },
}

/// The walk over one connection's header blocks, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skim {
    at: At,
    /// The last size update was to 0 (the table holds nothing, and keeps nothing inserted).
    max_zero: bool,
    /// Something may have been inserted since the table was last emptied.
    holds: bool,
    /// The bytes did not read as HPACK (the decoder refuses them; nothing is known).
    broken: bool,
}

impl Default for Skim {
    fn default() -> Self {
        Self {
            at: At::Start,
            max_zero: false,
            holds: false,
            broken: false,
        }
    }
}

impl Skim {
    /// Whether the client's encoder may have entries in the server's table (or whether that
    /// cannot be told).
    #[cfg(test)]
    pub(crate) fn may_hold(&self) -> bool {
        self.holds || self.broken
    }

    /// Whether something may have been inserted since the table was last emptied (the
    /// blocks read as HPACK).
    pub(crate) fn holds(&self) -> bool {
        self.holds
    }

    /// Whether the blocks did not read as HPACK: nothing is known of the table.
    pub(crate) fn broken(&self) -> bool {
        self.broken
    }

    /// Whether the walk is between representations (a header block may end here).
    pub(crate) fn at_start(&self) -> bool {
        self.at == At::Start
    }

    /// A frame that carried part of a block did not read as HTTP/2 (its padding or priority
    /// fields past its end): nothing is known of the table from here.
    pub(crate) fn break_off(&mut self) {
        self.broken = true;
        self.at = At::Start;
    }

    /// The block ended here: anything else is a broken block.
    pub(crate) fn end_block(&mut self) {
        if !self.at_start() {
            self.break_off();
        }
    }

    /// Reads the next bytes of the client's header blocks.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            if self.broken {
                return;
            }
            if let At::Skip { left, name } = self.at {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                bytes = bytes.get(n..).unwrap_or_default();
                let left = left - n as u64;
                self.at = match (left, name) {
                    (0, true) => At::Len { name: false },
                    (0, false) => At::Start,
                    _ => At::Skip { left, name },
                };
                continue;
            }
            bytes = rest;
            self.at = match self.at {
                At::Start => self.first(b),
                At::Len { name } => self.int(b, 7, Of::Len { name }),
                At::Int { value, shift, of } => {
                    // At most 2^28 or so: anything longer is no real header block.
                    if shift > 28 {
                        self.broken = true;
                        return;
                    }
                    let value = value + (u64::from(b & 0x7f) << shift);
                    if b & 0x80 != 0 {
                        At::Int {
                            value,
                            shift: shift + 7,
                            of,
                        }
                    } else {
                        self.done(value, of)
                    }
                }
                At::Skip { .. } => At::Start,
            };
        }
    }

    /// A representation's first byte (§6).
    fn first(&mut self, b: u8) -> At {
        if b & 0x80 != 0 {
            // An indexed field (§6.1).
            self.int(b, 7, Of::Index { literal: false })
        } else if b & 0xc0 == 0x40 {
            // A literal with incremental indexing (§6.2.1): inserted, unless nothing stays.
            if !self.max_zero {
                self.holds = true;
            }
            self.literal(b, 6)
        } else if b & 0xe0 == 0x20 {
            self.int(b, 5, Of::SizeUpdate)
        } else {
            // A literal without indexing or never indexed (§6.2.2, §6.2.3).
            self.literal(b, 4)
        }
    }

    /// A literal whose name index has a `prefix`-bit prefix: 0 means a name string follows.
    fn literal(&mut self, b: u8, prefix: u32) -> At {
        let mask = (1u8 << prefix) - 1;
        if b & mask == 0 {
            At::Len { name: true }
        } else {
            self.int(b, prefix, Of::Index { literal: true })
        }
    }

    /// An integer with a `prefix`-bit prefix starting in `b` (§5.1).
    fn int(&mut self, b: u8, prefix: u32, of: Of) -> At {
        let mask = (1u8 << prefix) - 1;
        let value = u64::from(b & mask);
        if value < u64::from(mask) {
            self.done(value, of)
        } else {
            At::Int {
                value,
                shift: 0,
                of,
            }
        }
    }

    /// An integer read whole.
    fn done(&mut self, value: u64, of: Of) -> At {
        match of {
            Of::Index { literal: false } => At::Start,
            Of::Index { literal: true } => At::Len { name: false },
            Of::SizeUpdate => {
                self.max_zero = value == 0;
                if self.max_zero {
                    self.holds = false;
                }
                At::Start
            }
            Of::Len { name } if value == 0 => {
                if name {
                    At::Len { name: false }
                } else {
                    At::Start
                }
            }
            Of::Len { name } => At::Skip { left: value, name },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skim(blocks: &[&[u8]], step: usize) -> Skim {
        let mut s = Skim::default();
        for block in blocks {
            for piece in block.chunks(step) {
                s.feed(piece);
            }
            s.end_block();
        }
        s
    }

    /// `:method GET`, `:scheme http` (indexed), `:path /a` and a `x-long` header with a
    /// 200-byte value as literals without indexing (one with a literal name).
    fn not_indexing() -> Vec<u8> {
        let mut b = vec![0x82, 0x86, 0x04, 0x02, b'/', b'a', 0x00, 0x06];
        b.extend_from_slice(b"x-long");
        b.extend_from_slice(&[0x7f, 200 - 127]);
        b.extend(std::iter::repeat_n(b'v', 200));
        b
    }

    #[test]
    fn blocks_that_insert_nothing_leave_the_table_empty() {
        for step in [1, 2, 3, 1000] {
            let s = skim(&[&not_indexing(), &[0x10, 0x01, b'n', 0x01, b'v']], step);
            assert!(!s.may_hold(), "in pieces of {step}");
            assert!(s.at_start());
        }
    }

    #[test]
    fn an_insertion_holds_until_the_table_is_emptied() {
        // `:authority` (static 1) with a value, with incremental indexing.
        let insert: &[u8] = &[0x41, 0x03, b'a', b'b', b'c'];
        // An update to 0, then one back to 4096 (0x3f 0xe1 0x1f).
        let zero: &[u8] = &[0x20, 0x82];
        let grow: &[u8] = &[0x3f, 0xe1, 0x1f, 0x82];
        for step in [1, 4, 100] {
            assert!(skim(&[insert], step).may_hold());
            assert!(!skim(&[insert, zero], step).may_hold(), "emptied");
            assert!(
                !skim(&[insert, zero, insert], step).may_hold(),
                "nothing stays at 0"
            );
            assert!(
                skim(&[insert, zero, grow, insert], step).may_hold(),
                "grown again"
            );
            assert!(
                !skim(&[insert, zero, grow], step).may_hold(),
                "grown, nothing in yet"
            );
            // A literal name with incremental indexing.
            assert!(skim(&[&[0x40, 0x01, b'x', 0x01, b'y']], step).may_hold());
        }
    }

    #[test]
    fn what_does_not_read_as_hpack_is_not_known_empty() {
        // A string cut short at the block's end.
        assert!(skim(&[&[0x04, 0x05, b'/']], 1).may_hold());
        // An integer that never ends.
        assert!(skim(&[&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]], 1).may_hold());
    }
}
