//! Fixed-size I/O buffers and the per-worker pool they come from.
//!
//! A `Buf` is a byte window `[start, end)` over storage that is zeroed once, when the
//! pool first creates it; reads append at `end`, writes consume from `start`. Buffers go
//! back to the pool as soon as a connection has nothing buffered, so an idle keep-alive
//! connection holds none. A buffer that had to grow past `BUF_SIZE` (a request head up to
//! the header limits, a rewritten head) is dropped instead of pooled, so the pool only
//! ever holds standard buffers and its memory is bounded by `max_pooled`.

use std::io::{self, Read};

/// Size of every pooled buffer. DESIGN §2 says 16 KiB; 32 KiB lets a 16 KiB response
/// and its head arrive in one read and leave in one write (measured: two syscalls fewer
/// per such request), and costs nothing while idle, since idle connections hold none.
pub const BUF_SIZE: usize = 32 * 1024;

/// 24 bytes: it sits twice in every client's slab entry (as `Option<Buf>`), so its size
/// is paid by every idle connection. A buffer never nears 4 GiB (heads are capped at
/// `MAX_HEAD`, bodies stream through), so `u32` offsets are enough.
pub struct Buf {
    data: Box<[u8]>,
    start: u32,
    end: u32,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn lo(&self) -> usize {
        self.start as usize
    }

    fn hi(&self) -> usize {
        self.end as usize
    }

    /// Offsets stay below the storage length, which `resize` keeps below 4 GiB.
    fn offset(n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The bytes not yet consumed.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.lo()..self.hi()]
    }

    pub fn len(&self) -> usize {
        self.hi() - self.lo()
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes that fit before the buffer is full (after compaction).
    pub fn free(&self) -> usize {
        self.data.len() - self.len()
    }

    /// True when no more bytes fit, even after compaction.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += Self::offset(n.min(self.len()));
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn start(&self) -> usize {
        self.lo()
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Drops a trailing CRLF that was just written (to extend the last header line).
    pub fn pop_crlf(&mut self) {
        if self.bytes().ends_with(b"\r\n") {
            self.end -= 2;
        }
    }

    /// Grows the storage to at least `cap` bytes (for heads past `BUF_SIZE`).
    pub fn grow_to(&mut self, cap: usize) {
        if cap > self.data.len() {
            self.resize(cap);
        }
    }

    fn resize(&mut self, cap: usize) {
        let cap = cap.min(u32::MAX as usize);
        let mut data = std::mem::take(&mut self.data).into_vec();
        data.resize(cap, 0);
        self.data = data.into_boxed_slice();
    }

    /// Appends bytes, growing the storage when they do not fit. Heads are written as a
    /// dozen small appends each, so the common case (room at the end) is kept inline.
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        let need = self.hi() + bytes.len();
        if let Some(room) = self.data.get_mut(self.hi()..need) {
            room.copy_from_slice(bytes);
            self.end = Self::offset(need);
        } else {
            self.extend_slow(bytes);
        }
    }

    #[cold]
    fn extend_slow(&mut self, bytes: &[u8]) {
        self.compact();
        let need = self.hi() + bytes.len();
        if need > self.data.len() {
            self.resize(need.max(self.data.len() * 2));
        }
        if let Some(room) = self.data.get_mut(self.hi()..need) {
            room.copy_from_slice(bytes);
            self.end = Self::offset(need);
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            let (lo, hi) = (self.lo(), self.hi());
            self.data.copy_within(lo..hi, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One `read` into all the free space; `Ok(0)` is end of stream. Callers check
    /// `is_full` first. Unconsumed bytes move to the front so one read can fill the rest.
    pub fn read_from(&mut self, src: &mut impl Read) -> io::Result<usize> {
        self.compact();
        loop {
            let hi = self.hi();
            match src.read(&mut self.data[hi..]) {
                Ok(n) => {
                    self.end = Self::offset(hi + n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl io::Write for Buf {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.extend(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Buffers the pool keeps however long they go unused: enough for the next few requests
/// without an allocation, little enough not to matter next to idle connections.
pub const KEEP_POOLED: usize = 16;

/// Per-worker free list of standard buffers.
///
/// The list grows to what the busiest moment needed (up to `max_pooled`), and `trim`
/// gives back what went unused since the last call: a burst's buffers do not stay
/// resident behind thousands of idle keep-alive connections.
pub struct BufPool {
    free: Vec<Buf>,
    max_pooled: usize,
    /// The shortest the free list was since the last `trim`: that many were not needed.
    low_water: usize,
    in_use: usize,
    /// Buffers handed out from the free list, and newly allocated.
    pub hits: u64,
    pub misses: u64,
}

impl BufPool {
    pub fn new(max_pooled: usize) -> BufPool {
        BufPool {
            free: Vec::new(),
            max_pooled,
            low_water: 0,
            in_use: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self) -> Buf {
        self.in_use += 1;
        match self.free.pop() {
            Some(buf) => {
                self.hits += 1;
                self.low_water = self.low_water.min(self.free.len());
                buf
            }
            None => {
                self.misses += 1;
                Buf::new()
            }
        }
    }

    pub fn put(&mut self, mut buf: Buf) {
        self.in_use = self.in_use.saturating_sub(1);
        if buf.capacity() == BUF_SIZE && self.free.len() < self.max_pooled {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Returns the buffer in `slot` to the pool when it holds nothing.
    pub fn release_if_empty(&mut self, slot: &mut Option<Buf>) {
        if slot.as_ref().is_some_and(Buf::is_empty) {
            if let Some(buf) = slot.take() {
                self.put(buf);
            }
        }
    }

    pub fn release(&mut self, slot: &mut Option<Buf>) {
        if let Some(buf) = slot.take() {
            self.put(buf);
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether a `trim` could free anything.
    pub fn over_keep(&self) -> bool {
        self.free.len() > KEEP_POOLED
    }

    /// Frees the buffers that stayed unused since the last call (beyond `KEEP_POOLED`);
    /// returns how many. Meant to be called on a period (a second), so a buffer freed
    /// went a whole period without being needed.
    pub fn trim(&mut self) -> usize {
        let spare = self
            .low_water
            .min(self.free.len().saturating_sub(KEEP_POOLED));
        self.free.truncate(self.free.len() - spare);
        if spare > 0 {
            self.free.shrink_to(self.free.len().max(KEEP_POOLED));
        }
        self.low_water = self.free.len();
        spare
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_consumes_and_resets() {
        let mut pool = BufPool::new(4);
        let mut buf = pool.get();
        buf.extend(b"hello world");
        buf.consume(6);
        assert_eq!(buf.bytes(), b"world");
        buf.consume(5);
        assert!(buf.is_empty());
        assert_eq!(buf.start(), 0);
        pool.put(buf);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn read_compacts_when_the_tail_is_full() {
        let mut buf = Buf::new();
        buf.extend(&vec![1u8; BUF_SIZE]);
        buf.consume(BUF_SIZE - 3);
        let n = buf.read_from(&mut &b"abc"[..]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(buf.bytes(), &[1, 1, 1, b'a', b'b', b'c']);
    }

    #[test]
    fn trim_frees_only_what_went_unused_for_a_period() {
        let mut pool = BufPool::new(1024);
        let bufs: Vec<Buf> = (0..40).map(|_| pool.get()).collect();
        for buf in bufs {
            pool.put(buf);
        }
        // The burst's buffers were all in use during this period: none freed.
        assert_eq!(pool.trim(), 0);
        // Next period, 10 in use at the busiest: 30 were spare; all but 16 are freed.
        let bufs: Vec<Buf> = (0..10).map(|_| pool.get()).collect();
        for buf in bufs {
            pool.put(buf);
        }
        assert_eq!(pool.trim(), 40 - KEEP_POOLED);
        assert_eq!(pool.free.len(), KEEP_POOLED);
        assert_eq!(pool.trim(), 0);
        assert!(!pool.over_keep());
    }

    #[test]
    fn grown_buffers_are_not_pooled() {
        let mut pool = BufPool::new(4);
        let mut buf = pool.get();
        buf.grow_to(BUF_SIZE * 2);
        pool.put(buf);
        let fresh = pool.get();
        assert_eq!(fresh.capacity(), BUF_SIZE);
    }
}
