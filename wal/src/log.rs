//! The segmented log on disk: segment files of records, a cursor file, and the scan that checks both
//! when the log is opened.
//!
//! ```text
//! DIR/00000000000000000042.seg   header: b"SURGEWAL" | version u32 LE (1) | first_seq u64 LE
//!                                then records (see `record`), sequence numbers rising by one
//! DIR/cursor                     acked u64 LE | crc32c of those 8 bytes u32 LE   (written via rename)
//! ```
//!
//! A segment is named by the first sequence number it may hold. The cursor is the first sequence
//! number *not* yet acknowledged by the destination: everything below it was delivered (or dropped for
//! good and counted). Only one thread writes (the queue's writer thread); readers open segment files
//! themselves and read only below the writer's published `persisted` mark.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use surge_sender::Batch;

use crate::record::{self, FrameError};

const MAGIC: &[u8; 8] = b"SURGEWAL";
const VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER: usize = 20;
const CURSOR: &str = "cursor";

/// When appended records are forced to disk with `fsync` (`fdatasync`).
///
/// Records are always handed to the kernel (`write`) as soon as the writer thread takes them, so a
/// killed process (SIGKILL, OOM kill) loses nothing the kernel has; the policy is about power loss and
/// kernel crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every group of records the writer takes at once (each wake-up), and after each cursor write.
    Always,
    /// At most once per interval (and when the queue shuts down): up to `interval` of accepted samples
    /// can be lost on power loss.
    Batch(Duration),
    /// Never; the kernel writes back when it likes.
    Never,
}

/// What the open-time scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The cursor read back: the first sequence number not acknowledged.
    pub acked: u64,
    /// Records at or after the cursor (to replay) and their samples.
    pub pending_records: u64,
    pub pending_samples: u64,
    /// Bytes after the last good record of a segment (torn write or corruption), skipped.
    pub corrupt_bytes: u64,
    /// Sequence numbers that are missing between good records (lost to corruption): their samples are
    /// unknown, so they are counted as batches.
    pub lost_batches: u64,
    /// Segment files that could not be used at all (bad header, unreadable).
    pub bad_segments: u64,
}

/// One segment file as the writer knows it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) first_seq: u64,
    path: PathBuf,
    pub(crate) bytes: u64,
    /// Sequence number and samples of each record, in order.
    pub(crate) records: Vec<(u64, u32)>,
}

/// The segments readers may open: first sequence number and path, in order.
pub type SegmentIndex = Arc<Mutex<Vec<(u64, PathBuf)>>>;

/// The writer's side of the log.
pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    segments: VecDeque<Segment>,
    active: Option<File>,
    index: SegmentIndex,
    bytes: u64,
    next_seq: u64,
    last_sync: Instant,
    unsynced: bool,
}

impl Log {
    /// Opens (creating) the log in `dir`: reads the cursor, scans every segment, truncates a torn tail,
    /// and deletes segments wholly below the cursor. Never fails on bad content, only on I/O errors
    /// (a directory that cannot be created or listed).
    pub fn open(dir: &Path, segment_bytes: u64, fsync: FsyncPolicy) -> io::Result<(Log, Recovery)> {
        fs::create_dir_all(dir)?;
        let mut rec = Recovery {
            acked: read_cursor(dir),
            ..Recovery::default()
        };
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                names.push((seq, path));
            }
        }
        names.sort();
        let mut segments = VecDeque::new();
        let mut expect: Option<u64> = None;
        let last = names.len().saturating_sub(1);
        for (i, (first_seq, path)) in names.into_iter().enumerate() {
            let Some(seg) = scan_segment(first_seq, &path, i == last, &mut rec) else {
                rec.bad_segments += 1;
                tracing::warn!(path = %path.display(), "durable queue: unusable segment skipped");
                let _ = fs::remove_file(&path);
                continue;
            };
            for &(seq, samples) in &seg.records {
                if let Some(e) = expect
                    && seq > e
                    && seq > rec.acked
                {
                    rec.lost_batches += seq - e.max(rec.acked);
                }
                expect = Some(seq + 1);
                if seq >= rec.acked {
                    rec.pending_records += 1;
                    rec.pending_samples += u64::from(samples);
                }
            }
            segments.push_back(seg);
        }
        let next_seq = expect.unwrap_or(0).max(rec.acked);
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let mut log = Log {
            dir: dir.to_owned(),
            segment_bytes: segment_bytes.max(SEGMENT_HEADER as u64 + 1),
            fsync,
            index: Arc::new(Mutex::new(Vec::new())),
            segments,
            active: None,
            bytes,
            next_seq,
            last_sync: Instant::now(),
            unsynced: false,
        };
        log.remove_acked(rec.acked)?;
        log.publish();
        if rec.corrupt_bytes > 0 || rec.lost_batches > 0 || rec.bad_segments > 0 {
            tracing::warn!(
                dir = %dir.display(),
                corrupt_bytes = rec.corrupt_bytes,
                lost_batches = rec.lost_batches,
                bad_segments = rec.bad_segments,
                "durable queue: corrupt or truncated data skipped"
            );
        }
        Ok((log, rec))
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes on disk (segment files).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Sequence number and samples of every record at or after `acked`, in order.
    pub fn records_from(&self, acked: u64) -> Vec<(u64, u32)> {
        self.segments
            .iter()
            .flat_map(|s| s.records.iter().copied())
            .filter(|r| r.0 >= acked)
            .collect()
    }

    pub fn index(&self) -> SegmentIndex {
        self.index.clone()
    }

    /// Appends framed records (already encoded, sequence numbers `next_seq()..`) in one write; `records`
    /// lists each one's sequence number and samples.
    pub fn append(&mut self, frames: &[u8], records: &[(u64, u32)]) -> io::Result<()> {
        let Some(&(first, _)) = records.first() else {
            return Ok(());
        };
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.bytes >= self.segment_bytes);
        if self.active.is_none() || full {
            self.roll(first)?;
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no active segment"));
        };
        if let Err(e) = file.write_all(frames) {
            // A partial write (e.g. ENOSPC) is cut off again, so later records follow good data.
            let _ = file.set_len(seg.bytes);
            let _ = file.seek(io::SeekFrom::Start(seg.bytes));
            return Err(e);
        }
        seg.bytes += frames.len() as u64;
        seg.records.extend_from_slice(records);
        self.bytes += frames.len() as u64;
        self.next_seq = records.last().map_or(self.next_seq, |r| r.0 + 1);
        self.unsynced = true;
        if self.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(())
    }

    /// Forces appended records to disk if the policy's interval has passed (or `force`).
    pub fn sync_due(&mut self, force: bool) -> io::Result<()> {
        let due = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Batch(every) => force || self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if due && self.unsynced {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(f) = &self.active {
            f.sync_data()?;
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Starts a new segment whose first record is `first_seq`.
    fn roll(&mut self, first_seq: u64) -> io::Result<()> {
        if self.unsynced && self.fsync != FsyncPolicy::Never {
            self.sync()?;
        }
        // An empty active segment (just opened, nothing appended) is replaced, not kept.
        if self.segments.back().is_some_and(|s| s.records.is_empty())
            && let Some(s) = self.segments.pop_back()
        {
            self.bytes -= s.bytes;
            let _ = fs::remove_file(&s.path);
        }
        let path = self.dir.join(format!("{first_seq:020}.seg"));
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        let mut header = Vec::with_capacity(SEGMENT_HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&first_seq.to_le_bytes());
        f.write_all(&header)?;
        self.active = Some(f);
        self.segments.push_back(Segment {
            first_seq,
            path,
            bytes: SEGMENT_HEADER as u64,
            records: Vec::new(),
        });
        self.bytes += SEGMENT_HEADER as u64;
        self.publish();
        Ok(())
    }

    /// Removes the oldest segment (rolling first if it is the active one) and returns what it held, so
    /// the caller can count its unacknowledged samples as dropped. `None` when the log is empty.
    pub(crate) fn drop_oldest(&mut self) -> io::Result<Option<Segment>> {
        if self.segments.len() == 1 && self.segments.front().is_some_and(|s| !s.records.is_empty())
        {
            self.roll(self.next_seq)?;
        }
        if self.segments.len() < 2 {
            return Ok(None);
        }
        let Some(seg) = self.segments.pop_front() else {
            return Ok(None);
        };
        fs::remove_file(&seg.path)?;
        self.bytes -= seg.bytes;
        self.publish();
        Ok(Some(seg))
    }

    /// Records the cursor (`acked` = first unacknowledged sequence number) and deletes every segment
    /// wholly below it (never the active one).
    ///
    /// Segments go first: that frees space on a full disk, and is safe even if the cursor write then
    /// fails (a restart replays from the older cursor what is still on disk: duplicates, not loss).
    pub fn ack(&mut self, acked: u64) -> io::Result<()> {
        self.remove_acked(acked)?;
        write_cursor(&self.dir, acked, self.fsync == FsyncPolicy::Always)
    }

    fn remove_acked(&mut self, acked: u64) -> io::Result<()> {
        let mut removed = false;
        while self.segments.len() > 1 {
            let Some(front) = self.segments.front() else {
                break;
            };
            // The next segment's first sequence number bounds this one's records.
            let next_first = self.segments.get(1).map_or(u64::MAX, |s| s.first_seq);
            let done = front.records.last().map_or(next_first, |r| r.0 + 1);
            if done > acked {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                fs::remove_file(&seg.path)?;
                self.bytes -= seg.bytes;
                removed = true;
            }
        }
        if removed {
            self.publish();
        }
        Ok(())
    }

    fn publish(&self) {
        *self.index.lock() = self
            .segments
            .iter()
            .map(|s| (s.first_seq, s.path.clone()))
            .collect();
    }
}

/// Reads every good record of one segment; truncates a torn or corrupt tail of the last segment (so
/// appends continue after good data) and counts the bytes skipped. `None` if the header is unusable.
fn scan_segment(first_seq: u64, path: &Path, last: bool, rec: &mut Recovery) -> Option<Segment> {
    let buf = fs::read(path).ok()?;
    let header = buf.get(..SEGMENT_HEADER)?;
    if &header[..8] != MAGIC
        || header[8..12] != VERSION.to_le_bytes()
        || header[12..20] != first_seq.to_le_bytes()
    {
        rec.corrupt_bytes += buf.len() as u64;
        return None;
    }
    let mut pos = SEGMENT_HEADER;
    let mut records = Vec::new();
    let mut prev: Option<u64> = None;
    while pos < buf.len() {
        let Ok((payload, len)) = record::frame(&buf[pos..]) else {
            break;
        };
        let Some((seq, samples)) = record::peek(payload) else {
            break;
        };
        if seq < first_seq || prev.is_some_and(|p| seq <= p) {
            break;
        }
        prev = Some(seq);
        records.push((seq, samples as u32));
        pos += len;
    }
    if pos < buf.len() {
        rec.corrupt_bytes += (buf.len() - pos) as u64;
        if last {
            // No later record can reveal the gap: what follows the last good record was (at most) the
            // one record being written, torn.
            rec.lost_batches += 1;
            if let Ok(f) = OpenOptions::new().write(true).open(path) {
                let _ = f.set_len(pos as u64);
            }
        }
    }
    Some(Segment {
        first_seq,
        path: path.to_owned(),
        bytes: if last { pos as u64 } else { buf.len() as u64 },
        records,
    })
}

fn read_cursor(dir: &Path) -> u64 {
    let Ok(b) = fs::read(dir.join(CURSOR)) else {
        return 0;
    };
    let (Some(seq), Some(crc)) = (b.get(..8), b.get(8..12)) else {
        tracing::warn!(dir = %dir.display(), "durable queue: cursor file truncated; replaying all");
        return 0;
    };
    if crc32c::crc32c(seq).to_le_bytes() != crc {
        tracing::warn!(dir = %dir.display(), "durable queue: cursor file corrupt; replaying all");
        return 0;
    }
    let mut x = [0; 8];
    x.copy_from_slice(seq);
    u64::from_le_bytes(x)
}

fn write_cursor(dir: &Path, acked: u64, sync: bool) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let mut b = acked.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32c::crc32c(&acked.to_le_bytes()).to_le_bytes());
    let mut f = File::create(&tmp)?;
    f.write_all(&b)?;
    if sync {
        f.sync_data()?;
    }
    fs::rename(&tmp, dir.join(CURSOR))
}

/// Reads records back by sequence number, in rising order, from the segment files.
pub struct LogReader {
    index: SegmentIndex,
    /// The segment being read: its first sequence number, file, bytes read so far and read position.
    cur: Option<(u64, File, Vec<u8>, usize)>,
}

/// What [`LogReader::read`] found for a sequence number.
pub enum ReadOutcome {
    Batch(Batch),
    /// The record is gone (its segment dropped or corrupt): reading resumes at `next`.
    Missing {
        next: u64,
    },
}

impl LogReader {
    pub fn new(index: SegmentIndex) -> Self {
        LogReader { index, cur: None }
    }

    /// The record `want`, which the writer has already persisted. `next_seq` is the writer's next
    /// sequence number (the bound for a gap at the end).
    pub fn read(&mut self, want: u64, next_seq: u64) -> ReadOutcome {
        for _ in 0..2 {
            let seg = {
                let index = self.index.lock();
                let i = index.partition_point(|(first, _)| *first <= want);
                match i.checked_sub(1).and_then(|i| index.get(i)) {
                    Some((first, path)) => Some((*first, path.clone())),
                    None => {
                        let next = index.first().map_or(next_seq, |s| s.0).max(want + 1);
                        return ReadOutcome::Missing { next };
                    }
                }
            };
            let Some((first, path)) = seg else { break };
            let reuse = matches!(&self.cur, Some((f, _, buf, pos)) if *f == first && peek_seq(buf, *pos).is_none_or(|s| s <= want));
            if !reuse {
                let Ok(mut f) = File::open(&path) else {
                    self.cur = None;
                    continue;
                };
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_err() {
                    self.cur = None;
                    continue;
                }
                self.cur = Some((first, f, buf, SEGMENT_HEADER));
            }
            if let Some(found) = self.scan_to(want) {
                return found;
            }
            // What was read may be stale (a failed write cut off again): read the file afresh.
            self.cur = None;
        }
        // Unreadable: skip to the next segment's start.
        let index = self.index.lock();
        let next = index
            .iter()
            .map(|s| s.0)
            .find(|&f| f > want)
            .unwrap_or(next_seq)
            .max(want + 1);
        ReadOutcome::Missing { next }
    }

    /// Scans the current segment forward to `want`; `None` if the segment must be reopened.
    fn scan_to(&mut self, want: u64) -> Option<ReadOutcome> {
        let (_, file, buf, pos) = self.cur.as_mut()?;
        loop {
            match record::frame(buf.get(*pos..).unwrap_or_default()) {
                Ok((payload, len)) => {
                    let (seq, _) = record::peek(payload)?;
                    if seq < want {
                        *pos += len;
                        continue;
                    }
                    if seq > want {
                        return Some(ReadOutcome::Missing { next: seq });
                    }
                    let batch = record::decode(payload).map(|(_, b)| b);
                    *pos += len;
                    return Some(match batch {
                        Some(b) => ReadOutcome::Batch(b),
                        None => ReadOutcome::Missing { next: want + 1 },
                    });
                }
                Err(FrameError::Truncated) => {
                    // The writer may have appended since this file was read: read the rest once.
                    let before = buf.len();
                    if file.read_to_end(buf).ok()? == 0 || buf.len() == before {
                        // End of this segment: `want` is in a later one (or lost to a torn tail).
                        let index = self.index.lock();
                        let next = index.iter().map(|s| s.0).find(|&f| f > want)?;
                        return Some(ReadOutcome::Missing { next });
                    }
                }
                Err(FrameError::Corrupt) => {
                    let index = self.index.lock();
                    let next = index.iter().map(|s| s.0).find(|&f| f > want)?;
                    return Some(ReadOutcome::Missing { next });
                }
            }
        }
    }
}

fn peek_seq(buf: &[u8], pos: usize) -> Option<u64> {
    let (payload, _) = record::frame(buf.get(pos..)?).ok()?;
    record::peek(payload).map(|p| p.0)
}
