//! Where a plain log's chunk in flight belongs, kept where a daemon killed by SIGKILL leaves it
//! for the next one.
//!
//! A plain log is copied in chunks: duplicated from the process's pipe into a staging pipe
//! (`tee`, which copies no bytes), written into the file from there, then dropped from the
//! process's pipe. The process can go on writing into its pipe while the kernel writes the file
//! (a `splice` straight from its pipe holds the pipe's lock for that whole time: 0.6× a direct
//! write, against about 1× this way). But a daemon killed after the file write and before the
//! drop leaves the chunk both in the file and at the head of the pipe, and the next daemon would
//! write it twice.
//!
//! So before each chunk the daemon notes, in a small file it maps into memory
//! (`logs/.positions`: plain stores, no system call), the log file's inode, the offset the chunk
//! goes to and its length; after the drop it clears the length. A daemon adopting the process
//! finds the note: the bytes of the file from that offset (at most the length) that are also the
//! head of the pipe, byte for byte, are the chunk, and are dropped from the pipe before the copy
//! resumes. Without the map (no room, a file system that refuses it) a log uses the `splice`
//! path, which never writes a byte twice.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Slots in the map (64 KiB): two per instance, for 1,024 instances at once; a log without one
/// is spliced.
const SLOTS: usize = 2048;
/// Words per slot: inode, offset, length, unused.
const WORDS: usize = 4;
const BYTES: usize = SLOTS * WORDS * 8;

/// The mapped file, shared by every plain log of the daemon.
pub struct Positions {
    words: &'static [AtomicU64],
    /// Slots this daemon hands out (a slot left by a dead daemon is free once checked).
    taken: Mutex<Vec<bool>>,
}

/// One log's slot; given back when dropped.
pub struct Slot {
    index: usize,
}

static MAP: OnceLock<Option<Positions>> = OnceLock::new();

impl Positions {
    /// The map of the logs directory `dir` (the first one asked for: a daemon has one).
    pub fn get(dir: &Path) -> Option<&'static Positions> {
        MAP.get_or_init(|| {
            let path = dir.join(".positions");
            match Positions::map(&path) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot map the log positions ({e}): plain logs are spliced");
                    None
                }
            }
        })
        .as_ref()
    }

    fn map(path: &Path) -> std::io::Result<Positions> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if file.metadata()?.len() != BYTES as u64 {
            file.set_len(BYTES as u64)?;
        }
        // SAFETY: a shared read-write mapping of a file we just sized; it is never unmapped, so
        // the slice below stays valid for the life of the process.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `at` is page-aligned, BYTES long, readable and writable, and only ever accessed
        // through these atomics (by this process; a dead daemon's stores are already there).
        let words = unsafe { std::slice::from_raw_parts(at.cast::<AtomicU64>(), SLOTS * WORDS) };
        Ok(Positions { words, taken: Mutex::new(vec![false; SLOTS]) })
    }

    /// A free slot, or `None` when all are in use. A slot holding a dead daemon's note of a
    /// chunk in flight is taken last: the process it belongs to may not be adopted yet.
    pub fn claim(&'static self) -> Option<Slot> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let free = |i: &usize| !taken[*i];
        let index = (0..SLOTS)
            .filter(free)
            .find(|&i| self.word(i, 2).load(Ordering::Acquire) == 0)
            .or_else(|| (0..SLOTS).find(free))?;
        taken[index] = true;
        self.word(index, 2).store(0, Ordering::Release);
        Some(Slot { index })
    }

    fn word(&self, slot: usize, k: usize) -> &AtomicU64 {
        &self.words[slot * WORDS + k]
    }

    /// A chunk of `len` bytes is about to go into the file `inode` at `offset`.
    pub fn begin(&self, slot: &Slot, inode: u64, offset: u64, len: u64) {
        self.word(slot.index, 0).store(inode, Ordering::Relaxed);
        self.word(slot.index, 1).store(offset, Ordering::Relaxed);
        self.word(slot.index, 2).store(len, Ordering::Release);
    }

    /// The chunk is in the file and gone from the pipe.
    pub fn end(&self, slot: &Slot) {
        self.word(slot.index, 2).store(0, Ordering::Release);
    }

    /// The chunk a dead daemon left in flight for the file `inode`: (offset, length). The note
    /// is cleared, whatever the caller then finds.
    pub fn take_pending(&self, inode: u64) -> Option<(u64, u64)> {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        (0..SLOTS).filter(|&i| !taken[i]).find_map(|i| {
            let len = self.word(i, 2).load(Ordering::Acquire);
            if len == 0 || self.word(i, 0).load(Ordering::Relaxed) != inode {
                return None;
            }
            let offset = self.word(i, 1).load(Ordering::Relaxed);
            self.word(i, 2).store(0, Ordering::Release);
            Some((offset, len))
        })
    }

    fn release(&self, slot: &Slot) {
        self.end(slot);
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken[slot.index] = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(Some(map)) = MAP.get() {
            map.release(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_left_in_flight_is_found_by_inode_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let map: &'static Positions =
            Box::leak(Box::new(Positions::map(&dir.path().join("p")).expect("map")));
        let slot = map.claim().expect("slot");
        map.begin(&slot, 42, 1000, 300);
        // The daemon that wrote it is gone: its slots are free for this one.
        map.taken.lock().expect("lock")[slot.index] = false;
        assert_eq!(map.take_pending(7), None);
        assert_eq!(map.take_pending(42), Some((1000, 300)));
        assert_eq!(map.take_pending(42), None, "taken once");
        let again = map.claim().expect("slot");
        map.begin(&again, 42, 2000, 10);
        map.end(&again);
        map.taken.lock().expect("lock")[again.index] = false;
        assert_eq!(map.take_pending(42), None, "a finished chunk leaves nothing");
        std::mem::forget(slot);
        std::mem::forget(again);
    }

    /// A new stream does not take the slot of a chunk a dead daemon left in flight while
    /// another is free.
    #[test]
    fn a_claim_leaves_a_pending_note_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let map: &'static Positions =
            Box::leak(Box::new(Positions::map(&dir.path().join("p")).expect("map")));
        let dead = map.claim().expect("slot");
        map.begin(&dead, 42, 1000, 300);
        map.taken.lock().expect("lock")[dead.index] = false;
        std::mem::forget(dead);
        let fresh = map.claim().expect("slot");
        assert_eq!(map.take_pending(42), Some((1000, 300)), "the note is still there");
        std::mem::forget(fresh);
    }

    #[test]
    fn the_notes_survive_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p");
        let first: &'static Positions = Box::leak(Box::new(Positions::map(&path).expect("map")));
        let slot = first.claim().expect("slot");
        first.begin(&slot, 9, 5, 6);
        std::mem::forget(slot);
        let second: &'static Positions = Box::leak(Box::new(Positions::map(&path).expect("map")));
        assert_eq!(second.take_pending(9), Some((5, 6)));
    }
}
