//! Stream ids and their rules, spec §8.2.2.
//!
//! The client opens a stream per request with a new odd id, strictly increasing; the server
//! answers on that id. Each pushed resource gets its own server-chosen even id, increasing. A
//! client reusing an id or going backwards gets End of stream 400 on that id. At most
//! [`limits::MAX_WS_STREAMS`] streams are open on one socket (spec §8.2.2 (ours)).

use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits;

/// A stream id: never 0; odd ids are the client's, even ids the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(NonZeroU32);

impl StreamId {
    /// The id, if it is not 0.
    pub fn new(id: u32) -> Option<Self> {
        NonZeroU32::new(id).map(Self)
    }

    /// The numeric id.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// True for client-opened (odd) ids.
    pub fn is_client(self) -> bool {
        self.get() % 2 == 1
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a stream could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StreamError {
    /// The client used an even (server) id.
    #[error("stream {0} is even: client streams are odd")]
    NotClientId(StreamId),
    /// The client reused an id or went backwards.
    #[error("stream {id} is not above the last client stream {last}")]
    NotIncreasing {
        /// The id the client used.
        id: StreamId,
        /// The highest id it used before.
        last: u32,
    },
    /// The socket already has the maximum number of open streams.
    #[error("more than {max} open streams")]
    TooManyStreams {
        /// The cap.
        max: usize,
    },
    /// The server ran out of even ids.
    #[error("server stream ids exhausted")]
    Exhausted,
}

impl StreamError {
    /// The status of the End of stream that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyStreams { .. } | Self::Exhausted => 429,
            _ => 400,
        }
    }
}

/// The open streams of one socket, with the id rules of §8.2.2.
#[derive(Clone, Debug)]
pub struct Streams {
    open: BTreeSet<u32>,
    last_client: u32,
    next_server: u32,
    max_open: usize,
}

impl Default for Streams {
    fn default() -> Self {
        Self::new(limits::MAX_WS_STREAMS)
    }
}

impl Streams {
    /// A stream table allowing `max_open` open streams (never above the hard cap).
    pub fn new(max_open: usize) -> Self {
        Self {
            open: BTreeSet::new(),
            last_client: 0,
            next_server: 2,
            max_open: max_open.min(limits::MAX_WS_STREAMS),
        }
    }

    /// Opens a stream the client started with a request.
    pub fn open_client(&mut self, id: StreamId) -> Result<(), StreamError> {
        if !id.is_client() {
            return Err(StreamError::NotClientId(id));
        }
        if id.get() <= self.last_client {
            return Err(StreamError::NotIncreasing {
                id,
                last: self.last_client,
            });
        }
        self.check_room()?;
        self.last_client = id.get();
        self.open.insert(id.get());
        Ok(())
    }

    /// Opens a new server (push) stream with the next even id.
    pub fn open_server(&mut self) -> Result<StreamId, StreamError> {
        self.check_room()?;
        let id = StreamId::new(self.next_server).ok_or(StreamError::Exhausted)?;
        // 0 marks exhaustion: `StreamId::new(0)` is `None` on the next call.
        self.next_server = self.next_server.checked_add(2).unwrap_or(0);
        self.open.insert(id.get());
        Ok(id)
    }

    /// Closes a stream; false if it was not open (unknown or finished: ignored, §8.4.6).
    pub fn close(&mut self, id: StreamId) -> bool {
        self.open.remove(&id.get())
    }

    /// True if the stream is open.
    pub fn is_open(&self, id: StreamId) -> bool {
        self.open.contains(&id.get())
    }

    /// How many streams are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    fn check_room(&self) -> Result<(), StreamError> {
        if self.open.len() >= self.max_open {
            return Err(StreamError::TooManyStreams { max: self.max_open });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> StreamId {
        StreamId::new(n).unwrap()
    }

    #[test]
    fn client_ids_odd_and_increasing() {
        let mut s = Streams::default();
        s.open_client(id(1)).unwrap();
        s.open_client(id(5)).unwrap();
        assert_eq!(
            s.open_client(id(5)),
            Err(StreamError::NotIncreasing { id: id(5), last: 5 })
        );
        assert_eq!(
            s.open_client(id(3)),
            Err(StreamError::NotIncreasing { id: id(3), last: 5 })
        );
        assert_eq!(s.open_client(id(6)), Err(StreamError::NotClientId(id(6))));
        assert!(s.close(id(1)));
        assert!(!s.close(id(1)));
        // A closed id still may not be reused.
        assert!(s.open_client(id(1)).is_err());
        assert_eq!(StreamId::new(0), None);
    }

    #[test]
    fn server_ids_even_and_increasing() {
        let mut s = Streams::default();
        assert_eq!(s.open_server().unwrap(), id(2));
        assert_eq!(s.open_server().unwrap(), id(4));
        s.open_client(id(1)).unwrap();
        assert_eq!(s.open_count(), 3);
    }

    #[test]
    fn open_streams_are_capped() {
        let mut s = Streams::new(3);
        s.open_client(id(1)).unwrap();
        s.open_server().unwrap();
        s.open_server().unwrap();
        let e = s.open_client(id(3)).unwrap_err();
        assert_eq!(e, StreamError::TooManyStreams { max: 3 });
        assert_eq!(e.status(), 429);
        assert!(s.open_server().is_err());
        s.close(id(2));
        s.open_client(id(3)).unwrap();
        assert_eq!(Streams::new(10_000).max_open, limits::MAX_WS_STREAMS);
    }

    #[test]
    fn server_ids_exhaust_cleanly() {
        let mut s = Streams {
            next_server: u32::MAX - 1,
            ..Streams::default()
        };
        assert_eq!(s.open_server(), Ok(id(u32::MAX - 1)));
        assert_eq!(s.open_server(), Err(StreamError::Exhausted));
    }
}
