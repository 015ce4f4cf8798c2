//! Compressed, randomly addressable blocks of samples, and the per-series ring built from them.
//!
//! # Layout
//!
//! A block holds up to [`BLOCK_SAMPLES`] samples of one series in consecutive `u64` words:
//!
//! | word | content |
//! |---|---|
//! | 0 | first timestamp `t0` (ms) |
//! | 1 | bits of the first value `v0` |
//! | 2 | `stride` (u32, ms) · `n` (u8) · `wt` (u8) · `wv` (u8) · `shift` (u8, `0xff` = integer mode) |
//! | 3 | integer mode only: `slope` (i64 per sample) |
//! | .. | `n` timestamp deviations of `wt` bits each, then `n` value residues of `wv` bits each |
//!
//! Timestamp `i` is `t0 + i·stride + unzigzag(dev_i)`: scrapes are regular, so with a 1 s interval and a few
//! ms of jitter a timestamp costs 0 to 4 bits. Value `i` is `v0 XOR (residue_i << shift)`: the block-wide
//! XOR residues share their leading and trailing zero bits, so only the `wv` bits that vary are kept
//! (0 bits for a constant gauge, ~8-12 for a counter growing steadily within a minute).
//!
//! When every value of a block is an integer (counters, most gauges), the residue is instead the zigzag
//! difference from a line, `value - (v0 + i·slope)` (integer mode): a counter growing at a steady rate costs
//! only the bits of its noise, and crossing a power of two (which changes XOR's exponent bits) costs nothing.
//!
//! All blocks of a series live in one `Vec<u64>` (sealed blocks, then the open one), so a series owns one
//! allocation for its samples however many blocks it holds.
//!
//! Unlike Gorilla's bit stream, every field has a fixed width, so sample `i` is decoded in O(1) without
//! touching samples `0..i`: a range query binary-searches the window start and decodes only the samples it
//! needs. The price is a few bits per sample on data whose variation changes within a block.
//!
//! # Appending
//!
//! [`SampleRing`] keeps the freshest samples raw in a small inline tail (the fast path for instant queries and
//! `irate`). When the tail is full, its samples are merged into the open block by re-encoding it (at most 64
//! samples, a few hundred nanoseconds every [`TAIL_SAMPLES`] samples); a block that reaches
//! [`BLOCK_SAMPLES`] is sealed, and sealed blocks older than the retention are dropped whole.

use surge_model::Sample;

/// Samples per sealed block.
pub const BLOCK_SAMPLES: usize = 64;
/// Raw samples kept uncompressed at the head of each series.
pub const TAIL_SAMPLES: usize = 4;
const HEADER_WORDS: usize = 3;
/// `shift` value marking integer mode: residues are zigzag `value - v0` of integer-valued samples, which
/// suits counters better than XOR (a counter crossing a power of two changes its exponent bits).
const INT_MODE: u32 = 0xff;

/// A view of one encoded block.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    words: &'a [u64],
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn width_of(max: u64) -> u32 {
    64 - max.leading_zeros()
}

fn put_bits(words: &mut [u64], off: usize, width: u32, value: u64) {
    if width == 0 {
        return;
    }
    let w = off / 64;
    let bit = (off % 64) as u32;
    words[w] |= value << bit;
    if bit + width > 64 {
        words[w + 1] |= value >> (64 - bit);
    }
}

fn get_bits(words: &[u64], off: usize, width: u32) -> u64 {
    if width == 0 {
        return 0;
    }
    let w = off / 64;
    let bit = (off % 64) as u32;
    let mut v = words[w] >> bit;
    if bit + width > 64 {
        v |= words[w + 1] << (64 - bit);
    }
    if width == 64 {
        v
    } else {
        v & ((1u64 << width) - 1)
    }
}

/// Integer value of `v` if it is an integer that round-trips through `i64` bit for bit.
fn as_int(v: f64) -> Option<i64> {
    let i = v as i64;
    ((i as f64).to_bits() == v.to_bits() && i.unsigned_abs() < (1 << 53)).then_some(i)
}

/// Encodes `samples` (1 to [`BLOCK_SAMPLES`] of them, timestamps increasing) and appends the words to `out`.
pub fn encode_block(samples: &[Sample], out: &mut Vec<u64>) {
    let n = samples.len().min(BLOCK_SAMPLES);
    let samples = &samples[..n];
    let Some(first) = samples.first() else {
        return;
    };
    let last = samples[n - 1];
    let t0 = first.timestamp_ms;
    let v0 = first.value.to_bits();
    let stride: u32 = if n > 1 {
        let span = i128::from(last.timestamp_ms) - i128::from(t0);
        let d = (n - 1) as i128;
        u32::try_from(((span + d / 2) / d).max(0)).unwrap_or(0)
    } else {
        0
    };
    let dev = |i: usize, t: i64| -> u64 {
        zigzag(
            t.wrapping_sub(t0)
                .wrapping_sub((i as i64).wrapping_mul(i64::from(stride))),
        )
    };
    // Integer mode's line through the first and last values.
    let int_line = match (as_int(first.value), as_int(last.value)) {
        (Some(a), Some(b)) if n > 1 => Some((a, (b - a) / (n as i64 - 1))),
        (Some(a), Some(_)) => Some((a, 0)),
        _ => None,
    };
    let int_residue = |i: usize, v: f64| -> Option<u64> {
        let (a, slope) = int_line?;
        let x = as_int(v)?;
        Some(zigzag(
            x.wrapping_sub(a).wrapping_sub(slope.wrapping_mul(i as i64)),
        ))
    };
    let mut max_dev = 0u64;
    let mut xor_or = 0u64;
    let mut int_or = Some(0u64);
    for (i, s) in samples.iter().enumerate() {
        max_dev |= dev(i, s.timestamp_ms);
        xor_or |= s.value.to_bits() ^ v0;
        int_or = int_or.and_then(|acc| int_residue(i, s.value).map(|r| acc | r));
    }
    let wt = width_of(max_dev);
    let (mut shift, mut wv) = if xor_or == 0 {
        (0, 0)
    } else {
        let shift = xor_or.trailing_zeros();
        (shift, 64 - xor_or.leading_zeros() - shift)
    };
    let int_mode = matches!(int_or, Some(acc) if width_of(acc) < wv);
    if let (true, Some(acc)) = (int_mode, int_or) {
        shift = INT_MODE;
        wv = width_of(acc);
    }
    let header = HEADER_WORDS + usize::from(int_mode);
    let bits = n * (wt + wv) as usize;
    let start = out.len();
    let len = header + bits.div_ceil(64);
    // Grow exactly: a doubling Vec would waste up to half of a series' memory.
    out.reserve_exact(len);
    out.resize(start + len, 0);
    let words = &mut out[start..];
    words[0] = t0 as u64;
    words[1] = v0;
    words[2] = u64::from(stride)
        | (n as u64) << 32
        | u64::from(wt) << 40
        | u64::from(wv) << 48
        | u64::from(shift) << 56;
    if int_mode {
        words[3] = int_line.map_or(0, |(_, slope)| slope) as u64;
    }
    let data = &mut words[header..];
    let values_off = n * wt as usize;
    for (i, s) in samples.iter().enumerate() {
        put_bits(data, i * wt as usize, wt, dev(i, s.timestamp_ms));
        let residue = if int_mode {
            int_residue(i, s.value).unwrap_or(0)
        } else {
            (s.value.to_bits() ^ v0) >> shift
        };
        put_bits(data, values_off + i * wv as usize, wv, residue);
    }
}

impl<'a> BlockRef<'a> {
    /// The block starting at `words[0]`; `words` may run past its end.
    pub fn new(words: &'a [u64]) -> BlockRef<'a> {
        let b = BlockRef { words };
        let len = b.words_len().min(words.len());
        BlockRef {
            words: &words[..len],
        }
    }

    fn meta(&self) -> u64 {
        self.words[2]
    }

    fn stride(&self) -> i64 {
        i64::from(self.meta() as u32)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        ((self.meta() >> 32) & 0xff) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wt(&self) -> u32 {
        ((self.meta() >> 40) & 0xff) as u32
    }

    fn wv(&self) -> u32 {
        ((self.meta() >> 48) & 0xff) as u32
    }

    fn shift(&self) -> u32 {
        ((self.meta() >> 56) & 0xff) as u32
    }

    fn header(&self) -> usize {
        HEADER_WORDS + usize::from(self.shift() == INT_MODE)
    }

    /// Words this block occupies.
    pub fn words_len(&self) -> usize {
        self.header() + (self.len() * (self.wt() + self.wv()) as usize).div_ceil(64)
    }

    fn data(&self) -> &'a [u64] {
        &self.words[self.header()..]
    }

    /// Timestamp of sample `i` (`i < len`).
    pub fn timestamp(&self, i: usize) -> i64 {
        let wt = self.wt();
        let dev = unzigzag(get_bits(self.data(), i * wt as usize, wt));
        (self.words[0] as i64)
            .wrapping_add((i as i64).wrapping_mul(self.stride()))
            .wrapping_add(dev)
    }

    /// Value of sample `i` (`i < len`).
    pub fn value(&self, i: usize) -> f64 {
        let wv = self.wv();
        let off = self.len() * self.wt() as usize + i * wv as usize;
        let residue = get_bits(self.data(), off, wv);
        let shift = self.shift();
        if shift == INT_MODE {
            let a = f64::from_bits(self.words[1]) as i64;
            let slope = self.words[3] as i64;
            return a
                .wrapping_add(slope.wrapping_mul(i as i64))
                .wrapping_add(unzigzag(residue)) as f64;
        }
        // `shift` < 64 whenever `wv` > 0; a zero residue needs no shift.
        let x = if wv == 0 { 0 } else { residue << shift };
        f64::from_bits(self.words[1] ^ x)
    }

    pub fn sample(&self, i: usize) -> Sample {
        Sample {
            timestamp_ms: self.timestamp(i),
            value: self.value(i),
        }
    }

    pub fn first_timestamp(&self) -> i64 {
        self.words[0] as i64
    }

    pub fn last_timestamp(&self) -> i64 {
        self.timestamp(self.len().saturating_sub(1))
    }

    /// Index of the first sample with timestamp ≥ `t` (or `len`).
    pub fn lower_bound(&self, t: i64) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.timestamp(mid) < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Appends samples `from..` with timestamps ≤ `maxt` to `out`; returns whether it stopped at `maxt`.
    /// The hot loop of range queries: the block's fields are decoded once, not per sample.
    pub fn decode_range(&self, from: usize, maxt: i64, out: &mut Vec<Sample>) -> bool {
        let (n, wt, wv, shift) = (self.len(), self.wt(), self.wv(), self.shift());
        let t0 = self.words[0] as i64;
        let v0 = self.words[1];
        let stride = self.stride();
        let data = self.data();
        let values_off = n * wt as usize;
        let int_mode = shift == INT_MODE;
        let (a, slope) = if int_mode {
            (f64::from_bits(v0) as i64, self.words[3] as i64)
        } else {
            (0, 0)
        };
        for i in from..n {
            let t = t0
                .wrapping_add((i as i64).wrapping_mul(stride))
                .wrapping_add(unzigzag(get_bits(data, i * wt as usize, wt)));
            if t > maxt {
                return true;
            }
            let residue = get_bits(data, values_off + i * wv as usize, wv);
            let value = if int_mode {
                a.wrapping_add(slope.wrapping_mul(i as i64))
                    .wrapping_add(unzigzag(residue)) as f64
            } else if wv == 0 {
                f64::from_bits(v0)
            } else {
                f64::from_bits(v0 ^ (residue << shift))
            };
            out.push(Sample {
                timestamp_ms: t,
                value,
            });
        }
        false
    }

    /// Appends every sample to `out`.
    pub fn decode_into(&self, out: &mut Vec<Sample>) {
        out.extend((0..self.len()).map(|i| self.sample(i)));
    }
}

/// Why a sample was not appended to a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// Its timestamp is older than the series' newest sample.
    OutOfOrder,
    /// Same timestamp as the newest sample but a different value.
    DuplicateTimestamp,
}

/// The recent samples of one series, oldest to newest: sealed blocks and the open block in one word
/// vector, then a raw tail.
#[derive(Debug, Clone)]
pub struct SampleRing {
    words: Vec<u64>,
    /// Word offset of the open block (`words.len()` when there is none).
    open_at: u32,
    tail: [Sample; TAIL_SAMPLES],
    tail_len: u8,
}

const ZERO: Sample = Sample {
    timestamp_ms: 0,
    value: 0.0,
};

impl Default for SampleRing {
    fn default() -> Self {
        SampleRing::new()
    }
}

/// Iterates the blocks of a word vector.
struct Blocks<'a> {
    words: &'a [u64],
    pos: usize,
}

impl<'a> Iterator for Blocks<'a> {
    type Item = BlockRef<'a>;
    fn next(&mut self) -> Option<BlockRef<'a>> {
        if self.pos + HEADER_WORDS > self.words.len() {
            return None;
        }
        let b = BlockRef::new(&self.words[self.pos..]);
        self.pos += b.words_len().max(1);
        Some(b)
    }
}

impl SampleRing {
    pub fn new() -> Self {
        SampleRing {
            words: Vec::new(),
            open_at: 0,
            tail: [ZERO; TAIL_SAMPLES],
            tail_len: 0,
        }
    }

    fn tail(&self) -> &[Sample] {
        &self.tail[..usize::from(self.tail_len)]
    }

    fn blocks(&self) -> Blocks<'_> {
        Blocks {
            words: &self.words,
            pos: 0,
        }
    }

    fn open(&self) -> Option<BlockRef<'_>> {
        let at = self.open_at as usize;
        (at + HEADER_WORDS <= self.words.len()).then(|| BlockRef::new(&self.words[at..]))
    }

    /// The newest sample.
    pub fn last(&self) -> Option<Sample> {
        if let Some(s) = self.tail().last() {
            return Some(*s);
        }
        self.blocks().last().map(|b| b.sample(b.len() - 1))
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.blocks().map(|b| b.len()).sum::<usize>() + self.tail().len()
    }

    pub fn is_empty(&self) -> bool {
        self.last().is_none()
    }

    /// Appends `s`, which must be newer than the newest sample. An identical repeat of the newest sample is
    /// accepted and ignored (`Ok(false)`), as Prometheus does.
    pub fn push(&mut self, s: Sample, retention_ms: i64) -> Result<bool, AppendError> {
        if let Some(last) = self.last() {
            if s.timestamp_ms < last.timestamp_ms {
                return Err(AppendError::OutOfOrder);
            }
            if s.timestamp_ms == last.timestamp_ms {
                return if s.value.to_bits() == last.value.to_bits() {
                    Ok(false)
                } else {
                    Err(AppendError::DuplicateTimestamp)
                };
            }
        }
        if usize::from(self.tail_len) == TAIL_SAMPLES {
            self.flush_tail(s.timestamp_ms.saturating_sub(retention_ms));
        }
        self.tail[usize::from(self.tail_len)] = s;
        self.tail_len += 1;
        Ok(true)
    }

    /// Merges the tail into the open block (re-encoding it), seals it when full, and drops sealed blocks
    /// ending before `cutoff_ms`.
    fn flush_tail(&mut self, cutoff_ms: i64) {
        let mut buf: [Sample; BLOCK_SAMPLES] = [ZERO; BLOCK_SAMPLES];
        let mut n = 0;
        if let Some(b) = self.open() {
            for i in 0..b.len() {
                buf[n] = b.sample(i);
                n += 1;
            }
        }
        for s in self.tail() {
            buf[n] = *s;
            n += 1;
        }
        self.tail_len = 0;
        self.words.truncate(self.open_at as usize);
        encode_block(&buf[..n], &mut self.words);
        if n == BLOCK_SAMPLES {
            self.open_at = u32::try_from(self.words.len()).unwrap_or(u32::MAX);
        }
        self.trim(cutoff_ms);
    }

    /// Drops sealed blocks whose newest sample is older than `cutoff_ms`.
    pub fn trim(&mut self, cutoff_ms: i64) {
        let mut drop = 0;
        for b in self.blocks() {
            if drop + b.words_len() > self.open_at as usize || b.last_timestamp() >= cutoff_ms {
                break;
            }
            drop += b.words_len();
        }
        if drop > 0 {
            self.words.drain(..drop);
            self.open_at -= u32::try_from(drop).unwrap_or(0);
            if self.words.capacity() > self.words.len() + 64 {
                self.words.shrink_to_fit();
            }
        }
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, oldest first (staleness markers included).
    pub fn range_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        for b in self.blocks() {
            if b.last_timestamp() < mint {
                continue;
            }
            if b.first_timestamp() > maxt {
                return;
            }
            let from = if b.first_timestamp() >= mint {
                0
            } else {
                b.lower_bound(mint)
            };
            if b.decode_range(from, maxt, out) {
                return;
            }
        }
        for s in self.tail() {
            if s.timestamp_ms > maxt {
                return;
            }
            if s.timestamp_ms >= mint {
                out.push(*s);
            }
        }
    }

    /// The newest sample with timestamp ≤ `t`.
    pub fn latest_at(&self, t: i64) -> Option<Sample> {
        if let Some(s) = self.tail().iter().rev().find(|s| s.timestamp_ms <= t) {
            return Some(*s);
        }
        let mut found = None;
        for b in self.blocks() {
            if b.first_timestamp() > t {
                break;
            }
            found = Some(b);
        }
        let b = found?;
        let i = b.lower_bound(t.saturating_add(1));
        Some(b.sample(i - 1))
    }

    /// Heap bytes owned (the word vector's capacity), without allocator overhead.
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(t: i64, v: f64) -> Sample {
        Sample {
            timestamp_ms: t,
            value: v,
        }
    }

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.timestamp_ms == y.timestamp_ms && x.value.to_bits() == y.value.to_bits()
            })
    }

    #[test]
    fn constant_regular_block_has_no_payload() {
        let v: Vec<_> = (0..64).map(|i| s(1_000_000 + i * 1000, 3.0)).collect();
        let mut words = Vec::new();
        encode_block(&v, &mut words);
        assert_eq!(words.len(), HEADER_WORDS);
        let mut out = Vec::new();
        BlockRef::new(&words).decode_into(&mut out);
        assert!(same(&out, &v));
    }

    #[test]
    fn ring_keeps_order_and_rejects_out_of_order() {
        let mut r = SampleRing::new();
        for i in 0..200 {
            assert_eq!(r.push(s(i * 1000, i as f64), i64::MAX), Ok(true));
        }
        assert_eq!(r.push(s(5, 1.0), i64::MAX), Err(AppendError::OutOfOrder));
        assert_eq!(
            r.push(s(199_000, 1.0), i64::MAX),
            Err(AppendError::DuplicateTimestamp)
        );
        assert_eq!(r.push(s(199_000, 199.0), i64::MAX), Ok(false));
        let mut out = Vec::new();
        r.range_into(10_000, 20_000, &mut out);
        assert_eq!(out.len(), 11);
        assert_eq!(out[0], s(10_000, 10.0));
        assert_eq!(r.latest_at(20_500), Some(s(20_000, 20.0)));
        assert_eq!(r.latest_at(-1), None);
        assert_eq!(r.len(), 200);
    }

    #[test]
    fn ring_trims_whole_blocks_past_retention() {
        let mut r = SampleRing::new();
        for i in 0..1000 {
            r.push(s(i * 1000, i as f64), 300_000).unwrap();
        }
        // 300 samples of retention plus at most one sealed block, the open block and the tail of slack.
        assert!(
            r.len() >= 300 && r.len() <= 300 + 2 * BLOCK_SAMPLES,
            "{}",
            r.len()
        );
        let mut out = Vec::new();
        r.range_into(0, i64::MAX, &mut out);
        assert_eq!(out.last(), Some(&s(999_000, 999.0)));
    }

    proptest! {
        #[test]
        fn block_round_trips(
            start in any::<i64>(),
            deltas in proptest::collection::vec(1i64..100_000, 0..BLOCK_SAMPLES),
            values in proptest::collection::vec(any::<u64>(), BLOCK_SAMPLES),
        ) {
            let mut t = start.min(i64::MAX - 100_000 * BLOCK_SAMPLES as i64);
            let mut v = vec![s(t, f64::from_bits(values[0]))];
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                v.push(s(t, f64::from_bits(values[i + 1])));
            }
            let mut words = Vec::new();
            encode_block(&v, &mut words);
            let b = BlockRef::new(&words);
            prop_assert_eq!(b.words_len(), words.len());
            let mut out = Vec::new();
            b.decode_into(&mut out);
            prop_assert!(same(&out, &v));
            for (i, x) in v.iter().enumerate() {
                prop_assert_eq!(b.lower_bound(x.timestamp_ms), i);
            }
        }

        #[test]
        fn ring_round_trips(
            deltas in proptest::collection::vec(1i64..5_000, 1..400),
            values in proptest::collection::vec(-1e6f64..1e6, 400),
        ) {
            let mut r = SampleRing::new();
            let mut t = 1_700_000_000_000i64;
            let mut want = Vec::new();
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                let x = s(t, values[i].round());
                r.push(x, i64::MAX).unwrap();
                want.push(x);
            }
            let mut got = Vec::new();
            r.range_into(i64::MIN, i64::MAX, &mut got);
            prop_assert!(same(&got, &want));
            let mid = want[want.len() / 2];
            prop_assert_eq!(r.latest_at(mid.timestamp_ms), Some(mid));
        }
    }
}
