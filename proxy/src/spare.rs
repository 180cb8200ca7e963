//! Per-thread spares of what every HTTP/1.1 exchange builds and drops: the header maps of the
//! request and response heads and the buffers heads are encoded into.
//!
//! Each worker is one thread, so a thread-local stack is a per-worker pool with no locking. A
//! fresh header map costs two allocations and two frees, an encode buffer one of each; taken from
//! here they cost none once the worker is warm. Only small objects are kept, and only a few of
//! them, so a burst of large heads does not pin memory.

use std::{
    cell::RefCell,
    ops::{Deref, DerefMut},
};

use http::HeaderMap;

/// Spares kept per thread of each kind.
const KEEP: usize = 32;
/// Header maps that grew past this many fields are dropped, not kept.
const MAP_FIELDS: usize = 64;
/// Buffers that grew past this are dropped, not kept.
const BUF_BYTES: usize = 16 * 1024;
/// Capacity of a new buffer: a typical head fits.
const BUF_START: usize = 512;

thread_local! {
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty header map with room for about `fields` fields.
pub fn header_map(fields: usize) -> HeaderMap {
    MAPS.with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| HeaderMap::with_capacity(fields))
}

/// Gives a header map back once its message is done with it.
pub fn give_map(mut h: HeaderMap) {
    if h.capacity() > MAP_FIELDS {
        return;
    }
    h.clear();
    MAPS.with_borrow_mut(|m| {
        if m.len() < KEEP {
            m.push(h);
        }
    });
}

/// An empty byte buffer, given back when dropped.
pub fn buffer() -> Buffer {
    let v = BUFS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(BUF_START));
    Buffer(v)
}

/// A byte buffer that returns to the thread's spares when dropped.
#[derive(Debug)]
pub struct Buffer(Vec<u8>);

impl Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.0.capacity() > BUF_BYTES {
            return;
        }
        let mut v = std::mem::take(&mut self.0);
        v.clear();
        BUFS.with_borrow_mut(|b| {
            if b.len() < KEEP {
                b.push(v);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_given_back_map_comes_back_empty_with_its_room() {
        let mut h = header_map(4);
        for i in 0..10 {
            h.append(
                http::HeaderName::try_from(format!("x-{i}")).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let room = h.capacity();
        give_map(h);
        let again = header_map(4);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
    }

    #[test]
    fn large_maps_and_buffers_are_not_kept() {
        MAPS.with_borrow_mut(Vec::clear);
        BUFS.with_borrow_mut(Vec::clear);
        let mut h = HeaderMap::with_capacity(MAP_FIELDS * 2);
        h.insert("x-a", HeaderValue::from_static("v"));
        give_map(h);
        assert_eq!(MAPS.with_borrow(Vec::len), 0);

        let mut b = buffer();
        b.extend_from_slice(&[0; BUF_BYTES + 1]);
        drop(b);
        assert_eq!(BUFS.with_borrow(Vec::len), 0);

        let mut b = buffer();
        b.extend_from_slice(b"GET / HTTP/1.1\r\n");
        drop(b);
        assert_eq!(BUFS.with_borrow(Vec::len), 1);
        assert!(buffer().is_empty());
    }

    #[test]
    fn at_most_keep_spares_per_kind() {
        MAPS.with_borrow_mut(Vec::clear);
        for _ in 0..KEEP + 10 {
            give_map(HeaderMap::with_capacity(4));
        }
        assert_eq!(MAPS.with_borrow(Vec::len), KEEP);
        let held: Vec<Buffer> = (0..KEEP + 10).map(|_| buffer()).collect();
        drop(held);
        assert_eq!(BUFS.with_borrow(Vec::len), KEEP);
    }
}
