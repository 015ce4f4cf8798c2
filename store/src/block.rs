//! Compressed, randomly addressable blocks of samples, and the per-series ring built from them.
//!
//! # Layout
//!
//! A block holds up to [`BLOCK_SAMPLES`] samples of one series in consecutive `u64` words:
//!
//! | word | content |
//! |---|---|
//! | 0 | timestamp base `t0` (ms): the first timestamp minus the largest jitter below the stride line |
//! | 1 | XOR and Gorilla modes: bits of the first value `v0`; scaled mode: the line's base `k0` |
//! | 2 | `stride` (u32, ms) · `n` (7 bits) + `clean` flag · `wt` (u8) · `wv` (u8) · `mode` (u8) |
//! | 3 | scaled mode: `slope` (i64 per sample); Gorilla mode: bit length of the value stream |
//! | .. | `n` timestamp deviations of `wt` bits each, then the values |
//!
//! Timestamp `i` is `t0 + i·stride + dev_i` (`dev_i` ≥ 0, `wt` bits): scrapes are regular, so with a 1 s
//! interval and a few ms of jitter a timestamp costs 0 to 3 bits. Each block picks the smallest of three value encodings:
//!
//! - **XOR** (`mode` < 64, the shift): value `i` is `v0 XOR (residue_i << shift)` with `wv`-bit residues:
//!   the block-wide XOR residues share their leading and trailing zero bits, so only the bits that vary are
//!   kept (0 bits for a constant gauge).
//! - **Scaled** (`mode` = `0x80 | slope flag 0x10 | d`, `d` ≤ 9): every value is an exact decimal with at
//!   most `d` fraction digits (`d` = 0: integers, as counters and most gauges are; `d` = 9: durations a Go
//!   program measured in nanoseconds and printed in seconds, such as node-exporter's
//!   `node_scrape_collector_duration_seconds`), i.e. `v = k / 10^d` bit for bit. The
//!   integers `k` are stored as `wv`-bit residues above a line, `k - (k0 + i·slope)` ≥ 0 (the line through
//!   the first and last values, or a level, whichever needs fewer bits): a counter growing at a steady rate
//!   costs only the bits of its noise, and a latency like `0.183` costs the bits of `183`'s variation
//!   instead of a 52-bit mantissa.
//! - **Gorilla** (`mode` = `0xc0`): Facebook Gorilla's XOR with the *previous* value, with leading/trailing
//!   zero windows (variable width), for floats that no fixed-width form captures (e.g. a gauge that is
//!   constant for a while then steps, or a slowly varying ratio).
//!
//! The `clean` flag says the block holds no staleness marker and no decrease between consecutive values
//! (no counter reset): `rate`/`increase`/`delta`/`irate` over a window of clean blocks need only its first
//! and last samples and its length ([`SampleRing::summarize`]), not every sample.
//!
//! All blocks of a series live in one `Vec<u64>` (sealed blocks, then the open one), so a series owns one
//! allocation for its samples however many blocks it holds.
//!
//! Timestamps always have a fixed width, so finding the window of a query is O(1)/O(log n) per block. XOR and
//! scaled values decode in O(1); a Gorilla block decodes its values sequentially (at most 64 of them).
//!
//! # Appending
//!
//! [`SampleRing`] keeps the freshest samples raw in a small inline tail (the fast path for instant queries and
//! `irate`). When the tail is full, its samples are merged into the open block by re-encoding it (at most 64
//! samples, a few hundred nanoseconds every [`TAIL_SAMPLES`] samples); a block that reaches
//! [`BLOCK_SAMPLES`] is sealed, sealed blocks older than the retention are dropped whole, and the oldest
//! block is re-encoded without its expired samples once 32 of them have expired.

use surge_model::{Sample, is_stale_nan};

/// Samples per sealed block.
pub const BLOCK_SAMPLES: usize = 64;
/// Raw samples kept uncompressed at the head of each series.
pub const TAIL_SAMPLES: usize = 4;
/// Expired samples the oldest block must hold before it is re-encoded without them: once every 32
/// samples, at most half a block past the retention.
const TRIM_MIN: usize = 32;
const HEADER_WORDS: usize = 3;
/// `mode` of scaled blocks, or'ed with the number of fraction digits.
const MODE_SCALED: u32 = 0x80;
/// Flag of scaled blocks whose line has a slope (in word 3); a level needs no fourth header word.
const SCALED_SLOPE: u32 = 0x10;
/// `mode` of Gorilla blocks.
const MODE_GORILLA: u32 = 0xc0;
/// Most fraction digits of the scaled mode.
const MAX_DIGITS: usize = 9;
const POW10: [f64; MAX_DIGITS + 1] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Bit of word 2 flagging a clean block (see the module docs).
const CLEAN_BIT: u64 = 1 << 39;

/// A view of one encoded block.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    words: &'a [u64],
    /// Word 2, read once.
    meta: u64,
    /// The words after the header.
    data: &'a [u64],
}

fn width_of(max: u64) -> u32 {
    64 - max.leading_zeros()
}

#[inline]
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

#[inline]
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

/// `k` such that `k / 10^d` is `v` bit for bit (`|k| < 2^53`), if there is one.
#[inline]
fn scaled(v: f64, d: usize) -> Option<i64> {
    let k = v * POW10[d];
    if k.is_nan() || k.abs() >= (1u64 << 53) as f64 {
        return None;
    }
    // Rounds half away from zero without libm's `round` (a call on baseline x86-64); a wrong candidate
    // only fails the check below.
    let ki = if k >= 0.0 {
        (k + 0.5) as i64
    } else {
        (k - 0.5) as i64
    };
    (unscale(ki, d).to_bits() == v.to_bits()).then_some(ki)
}

/// The value of scaled integer `k` with `d` fraction digits; the encoder checked it round-trips.
#[inline]
fn unscale(k: i64, d: usize) -> f64 {
    // Dividing by 1 is exact: skip the division's latency for integers.
    if d == 0 {
        k as f64
    } else {
        k as f64 / POW10[d]
    }
}

/// Writes (`out` = `Some`) or sizes (`None`) the Gorilla stream of `values[1..]` against `values[0]`;
/// returns its length in bits.
///
/// Per value: `0` = same as the previous; `10` + the meaningful bits within the previous window;
/// `11` + 5 bits of leading zeros + 6 bits of (length - 1) + the meaningful bits.
fn gorilla(values: impl Iterator<Item = u64>, mut out: Option<(&mut [u64], usize)>) -> usize {
    let mut bits = 0usize;
    let mut put = |width: u32, v: u64, bits: &mut usize| {
        if let Some((words, off)) = out.as_mut() {
            put_bits(words, *off + *bits, width, v);
        }
        *bits += width as usize;
    };
    let mut prev: Option<u64> = None;
    // Current window: leading zeros and meaningful length (0 = none yet).
    let (mut lz, mut mlen) = (0u32, 0u32);
    for v in values {
        let Some(p) = prev.replace(v) else {
            continue;
        };
        let x = v ^ p;
        if x == 0 {
            put(1, 0, &mut bits);
            continue;
        }
        let xlz = x.leading_zeros().min(31);
        let xtz = x.trailing_zeros();
        if mlen > 0 && xlz >= lz && xtz >= 64 - lz - mlen {
            put(2, 0b01, &mut bits);
            put(mlen, x >> (64 - lz - mlen), &mut bits);
        } else {
            lz = xlz;
            mlen = 64 - xlz - xtz;
            put(2, 0b11, &mut bits);
            put(5, u64::from(lz), &mut bits);
            put(6, u64::from(mlen - 1), &mut bits);
            put(mlen, x >> xtz, &mut bits);
        }
    }
    bits
}

/// Sequential decoder of a Gorilla value stream.
struct GorillaCursor<'a> {
    data: &'a [u64],
    pos: usize,
    prev: u64,
    lz: u32,
    mlen: u32,
    /// Whether `prev` is still the first value, not yet returned.
    fresh: bool,
}

impl<'a> GorillaCursor<'a> {
    fn new(data: &'a [u64], pos: usize, v0: u64) -> Self {
        GorillaCursor {
            data,
            pos,
            prev: v0,
            lz: 0,
            mlen: 0,
            fresh: true,
        }
    }

    /// Bits of the next value.
    fn next_bits(&mut self) -> u64 {
        if self.fresh {
            self.fresh = false;
            return self.prev;
        }
        // One bit at a time: the stream may end in the last bit of the block.
        if get_bits(self.data, self.pos, 1) == 0 {
            self.pos += 1;
            return self.prev;
        }
        let new_window = get_bits(self.data, self.pos + 1, 1) == 1;
        self.pos += 2;
        if new_window {
            self.lz = get_bits(self.data, self.pos, 5) as u32;
            self.mlen = get_bits(self.data, self.pos + 5, 6) as u32 + 1;
            self.pos += 11;
        }
        let m = get_bits(self.data, self.pos, self.mlen);
        self.pos += self.mlen as usize;
        // `lz + mlen` ≤ 64 by construction; `checked_shl` keeps a corrupt block from panicking.
        self.prev ^= m.checked_shl(64 - self.lz - self.mlen).unwrap_or(0);
        self.prev
    }
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
    // Deviation from the stride line; stored minus the smallest one, so all are ≥ 0.
    let dev = |i: usize, t: i64| -> i64 {
        t.wrapping_sub(t0)
            .wrapping_sub((i as i64).wrapping_mul(i64::from(stride)))
    };
    let (mut min_dev, mut max_dev) = (0i64, 0i64);
    let mut xor_or = 0u64;
    let mut clean = true;
    // Fewest fraction digits that make every value an exact decimal, if ≤ MAX_DIGITS.
    let mut digits = Some(0usize);
    // Scaled integers at `digits` digits; those before `ks_stale_before` were computed at fewer digits.
    let mut ks = [0i64; BLOCK_SAMPLES];
    let mut ks_stale_before = 0;
    let mut prev = first.value;
    for (i, s) in samples.iter().enumerate() {
        let d = dev(i, s.timestamp_ms);
        min_dev = min_dev.min(d);
        max_dev = max_dev.max(d);
        xor_or |= s.value.to_bits() ^ v0;
        // Exactly `rate`'s reset test (false for NaNs).
        let decrease = s.value < prev;
        clean &= !is_stale_nan(s.value) && !decrease;
        prev = s.value;
        while let Some(d) = digits {
            if let Some(k) = scaled(s.value, d) {
                ks[i] = k;
                break;
            }
            digits = (d < MAX_DIGITS).then_some(d + 1);
            ks_stale_before = i;
        }
    }
    let wt = width_of(max_dev.wrapping_sub(min_dev) as u64);
    // XOR mode: bits per value.
    let (xor_shift, xor_wv) = if xor_or == 0 {
        (0, 0)
    } else {
        let shift = xor_or.trailing_zeros();
        (shift, 64 - xor_or.leading_zeros() - shift)
    };
    // Scaled mode: the line through the first and last scaled values, and the residues' width.
    let scaled_line = digits.and_then(|d| {
        for (k, s) in ks.iter_mut().zip(samples).take(ks_stale_before) {
            *k = scaled(s.value, d)?;
        }
        let ks = &ks[..n];
        // The line through the first and last values (counters), or a level (noisy gauges): residues
        // are stored minus the smallest one, with the width of their range. Both in one pass.
        let through_ends = if n > 1 {
            ks[n - 1].wrapping_sub(ks[0]) / (n as i64 - 1)
        } else {
            0
        };
        let (mut lo0, mut hi0, mut lo1, mut hi1) = (i64::MAX, i64::MIN, i64::MAX, i64::MIN);
        for (i, k) in ks.iter().enumerate() {
            lo0 = lo0.min(*k);
            hi0 = hi0.max(*k);
            let r = k.wrapping_sub(through_ends.wrapping_mul(i as i64));
            lo1 = lo1.min(r);
            hi1 = hi1.max(r);
        }
        let fit = |slope: i64| {
            let (lo, hi) = if slope == 0 { (lo0, hi0) } else { (lo1, hi1) };
            (lo, slope, width_of(hi.wrapping_sub(lo) as u64))
        };
        // Bits of residues plus the slope's header word, if any.
        let cost =
            |(_, slope, w): (i64, i64, u32)| n * w as usize + if slope == 0 { 0 } else { 64 };
        let (a, slope, w) = [fit(0), fit(through_ends)]
            .into_iter()
            .min_by_key(|f| cost(*f))?;
        Some((d, a, slope, w))
    });
    // Value bits (header words beyond the first three included) of each mode; the smallest wins, fixed
    // widths on ties (they decode in O(1)).
    let xor_cost = n * xor_wv as usize;
    let scaled_cost =
        scaled_line.map(|(_, _, slope, w)| n * w as usize + if slope == 0 { 0 } else { 64 });
    let fixed_best = scaled_cost.map_or(xor_cost, |c| c.min(xor_cost));
    // Gorilla costs at least a bit per value: not worth sizing when a fixed width does that well.
    let gorilla_bits = if fixed_best > n {
        Some(gorilla(samples.iter().map(|s| s.value.to_bits()), None))
    } else {
        None
    };
    enum Mode {
        Xor,
        Scaled(usize, i64, i64, u32),
        Gorilla(usize),
    }
    let mode = match (scaled_line, gorilla_bits) {
        (_, Some(g)) if 64 + g < fixed_best => Mode::Gorilla(g),
        (Some((d, a, slope, w)), _) if scaled_cost.is_some_and(|c| c <= xor_cost) => {
            Mode::Scaled(d, a, slope, w)
        }
        _ => Mode::Xor,
    };
    let (mode_byte, wv, value_bits, header) = match mode {
        Mode::Xor => (xor_shift, xor_wv, xor_cost, HEADER_WORDS),
        Mode::Scaled(d, _, slope, w) => {
            let (flag, words) = if slope == 0 {
                (0, HEADER_WORDS)
            } else {
                (SCALED_SLOPE, HEADER_WORDS + 1)
            };
            (MODE_SCALED | flag | d as u32, w, n * w as usize, words)
        }
        Mode::Gorilla(g) => (MODE_GORILLA, 0, g, HEADER_WORDS + 1),
    };
    let bits = n * wt as usize + value_bits;
    let start = out.len();
    let len = header + bits.div_ceil(64);
    // Grow exactly: a doubling Vec would waste up to half of a series' memory.
    out.reserve_exact(len);
    out.resize(start + len, 0);
    let words = &mut out[start..];
    words[0] = t0.wrapping_add(min_dev) as u64;
    words[1] = match mode {
        Mode::Scaled(_, a, _, _) => a as u64,
        _ => v0,
    };
    words[2] = u64::from(stride)
        | (n as u64) << 32
        | if clean { CLEAN_BIT } else { 0 }
        | u64::from(wt) << 40
        | u64::from(wv) << 48
        | u64::from(mode_byte) << 56;
    match mode {
        Mode::Scaled(_, _, slope, _) if slope != 0 => words[3] = slope as u64,
        Mode::Scaled(..) => {}
        Mode::Gorilla(g) => words[3] = g as u64,
        Mode::Xor => {}
    }
    let data = &mut words[header..];
    let values_off = n * wt as usize;
    for (i, s) in samples.iter().enumerate() {
        let d = dev(i, s.timestamp_ms).wrapping_sub(min_dev) as u64;
        put_bits(data, i * wt as usize, wt, d);
    }
    match mode {
        Mode::Xor => {
            for (i, s) in samples.iter().enumerate() {
                let r = (s.value.to_bits() ^ v0) >> xor_shift;
                put_bits(data, values_off + i * wv as usize, wv, r);
            }
        }
        Mode::Scaled(_, a, slope, _) => {
            for (i, k) in ks[..n].iter().enumerate() {
                let r = k.wrapping_sub(slope.wrapping_mul(i as i64)).wrapping_sub(a) as u64;
                put_bits(data, values_off + i * wv as usize, wv, r);
            }
        }
        Mode::Gorilla(_) => {
            gorilla(
                samples.iter().map(|s| s.value.to_bits()),
                Some((data, values_off)),
            );
        }
    }
}

/// How a block's values decode, with its fields read once.
#[derive(Clone, Copy)]
enum ValueCodec {
    Xor { v0: u64, shift: u32 },
    Scaled { k0: i64, slope: i64, digits: usize },
    Gorilla { v0: u64 },
}

impl<'a> BlockRef<'a> {
    /// The block starting at `words[0]`; `words` may run past its end.
    #[inline]
    pub fn new(words: &'a [u64]) -> BlockRef<'a> {
        let mut b = BlockRef {
            words,
            meta: words[2],
            data: &[],
        };
        let len = b.words_len().min(words.len());
        b.words = &words[..len];
        b.data = &b.words[b.header().min(len)..];
        b
    }

    #[inline]
    fn meta(&self) -> u64 {
        self.meta
    }

    #[inline]
    fn stride(&self) -> i64 {
        i64::from(self.meta() as u32)
    }

    /// Number of samples.
    #[inline]
    pub fn len(&self) -> usize {
        ((self.meta() >> 32) & 0x7f) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No staleness marker and no decrease between consecutive values.
    #[inline]
    pub fn is_clean(&self) -> bool {
        self.meta() & CLEAN_BIT != 0
    }

    #[inline]
    fn wt(&self) -> u32 {
        ((self.meta() >> 40) & 0xff) as u32
    }

    #[inline]
    fn wv(&self) -> u32 {
        ((self.meta() >> 48) & 0xff) as u32
    }

    #[inline]
    fn mode(&self) -> u32 {
        ((self.meta() >> 56) & 0xff) as u32
    }

    #[inline]
    fn header(&self) -> usize {
        let mode = self.mode();
        HEADER_WORDS
            + usize::from(mode == MODE_GORILLA || mode == mode | MODE_SCALED | SCALED_SLOPE)
    }

    #[inline]
    fn value_bits(&self) -> usize {
        if self.mode() == MODE_GORILLA {
            self.words.get(3).map_or(0, |w| *w as usize)
        } else {
            self.len() * self.wv() as usize
        }
    }

    /// Words this block occupies.
    #[inline]
    pub fn words_len(&self) -> usize {
        self.header() + (self.len() * self.wt() as usize + self.value_bits()).div_ceil(64)
    }

    #[inline]
    fn data(&self) -> &'a [u64] {
        self.data
    }

    #[inline]
    fn codec(&self) -> ValueCodec {
        let mode = self.mode();
        if mode == MODE_GORILLA {
            ValueCodec::Gorilla { v0: self.words[1] }
        } else if mode >= MODE_SCALED {
            ValueCodec::Scaled {
                k0: self.words[1] as i64,
                slope: if mode & SCALED_SLOPE != 0 {
                    self.words[3] as i64
                } else {
                    0
                },
                digits: ((mode & 0xf) as usize).min(MAX_DIGITS),
            }
        } else {
            ValueCodec::Xor {
                v0: self.words[1],
                shift: mode,
            }
        }
    }

    /// Timestamp of sample `i` (`i < len`).
    #[inline]
    pub fn timestamp(&self, i: usize) -> i64 {
        let wt = self.wt();
        let dev = get_bits(self.data(), i * wt as usize, wt) as i64;
        (self.words[0] as i64)
            .wrapping_add((i as i64).wrapping_mul(self.stride()))
            .wrapping_add(dev)
    }

    /// Value of sample `i` (`i < len`): O(1), except in Gorilla blocks (O(i)).
    #[inline]
    pub fn value(&self, i: usize) -> f64 {
        let wv = self.wv();
        let values_off = self.len() * self.wt() as usize;
        match self.codec() {
            ValueCodec::Xor { v0, shift } => {
                // `shift` < 64 whenever `wv` > 0; a zero residue needs no shift.
                let residue = get_bits(self.data(), values_off + i * wv as usize, wv);
                let x = if wv == 0 { 0 } else { residue << shift };
                f64::from_bits(v0 ^ x)
            }
            ValueCodec::Scaled { k0, slope, digits } => {
                let residue = get_bits(self.data(), values_off + i * wv as usize, wv);
                unscale(
                    k0.wrapping_add(slope.wrapping_mul(i as i64))
                        .wrapping_add(residue as i64),
                    digits,
                )
            }
            ValueCodec::Gorilla { v0 } => self.gorilla_value(v0, values_off, i),
        }
    }

    #[inline(never)]
    fn gorilla_value(&self, v0: u64, values_off: usize, i: usize) -> f64 {
        let mut c = GorillaCursor::new(self.data(), values_off, v0);
        let mut bits = v0;
        for _ in 0..=i {
            bits = c.next_bits();
        }
        f64::from_bits(bits)
    }

    #[inline]
    pub fn sample(&self, i: usize) -> Sample {
        Sample {
            timestamp_ms: self.timestamp(i),
            value: self.value(i),
        }
    }

    #[inline]
    pub fn first_timestamp(&self) -> i64 {
        self.timestamp(0)
    }

    #[inline]
    pub fn last_timestamp(&self) -> i64 {
        self.timestamp(self.len().saturating_sub(1))
    }

    /// Index of the first sample with timestamp ≥ `t` (or `len`). Scrapes are regular, so the stride gives a
    /// guess that is right or one off; a binary search covers the rest.
    pub fn lower_bound(&self, t: i64) -> usize {
        let n = self.len();
        let stride = self.stride();
        let t0 = self.first_timestamp();
        if t <= t0 {
            return 0;
        }
        if stride > 0 {
            let guess = ((t - t0).saturating_add(stride - 1) / stride).clamp(0, n as i64) as usize;
            // `guess` is the answer when sample `guess - 1` is before `t` and sample `guess` is not.
            let before = |i: usize| i == 0 || self.timestamp(i - 1) < t;
            let at_or_after = |i: usize| i == n || self.timestamp(i) >= t;
            if before(guess) {
                if at_or_after(guess) {
                    return guess;
                }
                if at_or_after(guess + 1) {
                    return guess + 1;
                }
            } else if guess > 0 && before(guess - 1) {
                return guess - 1;
            }
        }
        let (mut lo, mut hi) = (0, n);
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
        self.decode_with(from, maxt, |s| out.push(s))
    }

    /// [`Self::decode_range`] into any sink.
    #[inline]
    fn decode_with(&self, from: usize, maxt: i64, mut sink: impl FnMut(Sample)) -> bool {
        let (n, wt, wv) = (self.len(), self.wt(), self.wv());
        let t0 = self.words[0] as i64;
        let stride = self.stride();
        let data = self.data();
        let values_off = n * wt as usize;
        let ts = |i: usize| {
            t0.wrapping_add((i as i64).wrapping_mul(stride))
                .wrapping_add(get_bits(data, i * wt as usize, wt) as i64)
        };
        let fixed = |i: usize| get_bits(data, values_off + i * wv as usize, wv);
        match self.codec() {
            ValueCodec::Xor { v0, shift } => {
                for i in from..n {
                    let t = ts(i);
                    if t > maxt {
                        return true;
                    }
                    let value = if wv == 0 {
                        f64::from_bits(v0)
                    } else {
                        f64::from_bits(v0 ^ (fixed(i) << shift))
                    };
                    sink(Sample {
                        timestamp_ms: t,
                        value,
                    });
                }
            }
            ValueCodec::Scaled { k0, slope, digits } => {
                for i in from..n {
                    let t = ts(i);
                    if t > maxt {
                        return true;
                    }
                    let k = k0
                        .wrapping_add(slope.wrapping_mul(i as i64))
                        .wrapping_add(fixed(i) as i64);
                    sink(Sample {
                        timestamp_ms: t,
                        value: unscale(k, digits),
                    });
                }
            }
            ValueCodec::Gorilla { v0 } => {
                let mut c = GorillaCursor::new(data, values_off, v0);
                for i in 0..n {
                    let bits = c.next_bits();
                    if i < from {
                        continue;
                    }
                    let t = ts(i);
                    if t > maxt {
                        return true;
                    }
                    sink(Sample {
                        timestamp_ms: t,
                        value: f64::from_bits(bits),
                    });
                }
            }
        }
        false
    }

    /// Appends every sample to `out`.
    pub fn decode_into(&self, out: &mut Vec<Sample>) {
        self.decode_range(0, i64::MAX, out);
    }
}

/// Why a sample was not appended to a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// Its timestamp is older than the series' newest sample and it is not an identical copy of a
    /// sample held at that timestamp.
    OutOfOrder,
    /// Same timestamp as the newest sample but a different value.
    DuplicateTimestamp,
}

/// Whether two samples carry the same value bit for bit (staleness markers included, which `==` on
/// NaN would never match).
fn same_bits(a: Sample, b: Sample) -> bool {
    a.value.to_bits() == b.value.to_bits()
}

/// What `rate`, `increase`, `delta`, `irate`, `idelta`, `count_over_time` and `last_over_time` need of a
/// window: its first, second-to-last and last samples, its length, and whether a value decreases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSummary {
    pub first: Sample,
    /// The sample before `last` (`first` when `count` is 1).
    pub penultimate: Sample,
    pub last: Sample,
    pub count: usize,
    /// Some value is lower than the one before it (a counter reset).
    pub decreases: bool,
}

/// [`SampleRing::summarize`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// No sample in the window.
    Empty,
    Summary(WindowSummary),
    /// The window touches a block with a staleness marker or a decrease, or a staleness marker in the tail:
    /// decode the samples instead.
    Unsupported,
}

/// The recent samples of one series, oldest to newest: sealed blocks and the open block in one word
/// vector, then a raw tail.
#[derive(Debug, Clone)]
pub struct SampleRing {
    words: Vec<u64>,
    /// Word offset of the open block (`words.len()` when there is none).
    open_at: u32,
    /// Word offset of the newest sealed block (0 when unknown: scanning from any block start is correct),
    /// so that reads of recent windows skip the older blocks.
    sealed_at: u32,
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

/// Accumulates a [`WindowSummary`] from runs of consecutive samples.
/// Accumulates a [`WindowSummary`] from runs of consecutive samples. The penultimate sample, which only
/// `irate` and `idelta` read, is decoded once at the end, from where the last run of two or more left it.
#[derive(Default)]
struct SummaryBuilder<'a> {
    s: Option<WindowSummary>,
    penultimate_at: Option<(BlockRef<'a>, usize)>,
}

impl<'a> SummaryBuilder<'a> {
    /// Adds a run `first, …, last` of `count` samples with no decrease inside; `penultimate` locates the
    /// sample before `last` when the run has two or more.
    fn run(
        &mut self,
        first: Sample,
        penultimate: Option<(BlockRef<'a>, usize)>,
        last: Sample,
        count: usize,
    ) {
        match &mut self.s {
            None => {
                self.s = Some(WindowSummary {
                    first,
                    penultimate: first,
                    last,
                    count,
                    decreases: false,
                });
            }
            Some(w) => {
                w.decreases |= first.value < w.last.value;
                w.penultimate = w.last;
                w.last = last;
                w.count += count;
            }
        }
        self.penultimate_at = penultimate;
    }

    fn finish(self, penultimate: bool) -> Window {
        match self.s {
            None => Window::Empty,
            Some(mut w) => {
                if let (true, Some((b, i))) = (penultimate, self.penultimate_at) {
                    w.penultimate = b.sample(i);
                }
                Window::Summary(w)
            }
        }
    }
}

impl SampleRing {
    pub fn new() -> Self {
        SampleRing {
            words: Vec::new(),
            open_at: 0,
            sealed_at: 0,
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

    /// The blocks from the newest one that starts at or before `t`: together with the tail, they hold every
    /// sample with timestamp ≥ `t`, and the newest sample ≤ `t` if any.
    fn blocks_from(&self, t: i64) -> Blocks<'_> {
        let starts_before = |at: u32| {
            let at = at as usize;
            at + HEADER_WORDS <= self.words.len()
                && BlockRef::new(&self.words[at..]).first_timestamp() <= t
        };
        let pos = if starts_before(self.open_at) {
            self.open_at
        } else if self.sealed_at < self.open_at && starts_before(self.sealed_at) {
            self.sealed_at
        } else {
            0
        };
        Blocks {
            words: &self.words,
            pos: pos as usize,
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

    /// Appends `s`, which must be newer than the newest sample. An identical copy of a sample already
    /// held (same timestamp, same value bits) is accepted and ignored (`Ok(false)`): Prometheus does so
    /// for the newest sample, and its out-of-order head for any sample in its window
    /// (`tsdb/ooo_head.go`, `OOOChunk.Insert`). Older samples arrive again when an agent resends what a
    /// peer's copy already brought; they are not errors. Only a different value is refused.
    pub fn push(&mut self, s: Sample, retention_ms: i64) -> Result<bool, AppendError> {
        if let Some(last) = self.last() {
            if s.timestamp_ms < last.timestamp_ms {
                // The lookup costs a block decode at most, and only on this path (never on in-order
                // appends).
                return match self.latest_at(s.timestamp_ms) {
                    Some(held) if held.timestamp_ms == s.timestamp_ms && same_bits(held, s) => {
                        Ok(false)
                    }
                    _ => Err(AppendError::OutOfOrder),
                };
            }
            if s.timestamp_ms == last.timestamp_ms {
                return if same_bits(last, s) {
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
        // The open block holds a multiple of TAIL_SAMPLES below BLOCK_SAMPLES samples: the tail fits.
        let mut buf = [ZERO; BLOCK_SAMPLES];
        let mut n = 0;
        if let Some(b) = self.open() {
            b.decode_with(0, i64::MAX, |s| {
                if let Some(slot) = buf.get_mut(n) {
                    *slot = s;
                    n += 1;
                }
            });
        }
        for s in self.tail() {
            if let Some(slot) = buf.get_mut(n) {
                *slot = *s;
                n += 1;
            }
        }
        self.tail_len = 0;
        self.words.truncate(self.open_at as usize);
        encode_block(&buf[..n], &mut self.words);
        if n >= BLOCK_SAMPLES {
            self.sealed_at = self.open_at;
            self.open_at = u32::try_from(self.words.len()).unwrap_or(u32::MAX);
        }
        self.trim(cutoff_ms);
        self.trim_oldest(cutoff_ms);
    }

    /// Re-encodes the oldest sealed block without its samples older than `cutoff_ms` once at least
    /// [`TRIM_MIN`] of them are (whole expired blocks are [`Self::trim`]'s): without it a ring holds up to a
    /// block of expired samples, 11% more than the retention on average with 5 min of 1 s samples.
    fn trim_oldest(&mut self, cutoff_ms: i64) {
        if self.open_at == 0 || self.words.len() < HEADER_WORDS {
            return;
        }
        let b = BlockRef::new(&self.words);
        let from = b.lower_bound(cutoff_ms);
        if from < TRIM_MIN || from >= b.len() {
            return;
        }
        let old_len = b.words_len();
        let mut buf = [ZERO; BLOCK_SAMPLES];
        let mut n = 0;
        b.decode_with(from, i64::MAX, |s| {
            if let Some(slot) = buf.get_mut(n) {
                *slot = s;
                n += 1;
            }
        });
        let mut kept = Vec::new();
        encode_block(&buf[..n], &mut kept);
        let Some(saved) = old_len.checked_sub(kept.len()) else {
            return;
        };
        self.words.splice(..old_len, kept);
        let saved = u32::try_from(saved).unwrap_or(0);
        self.open_at -= saved;
        self.sealed_at = self.sealed_at.saturating_sub(saved);
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
            let drop = u32::try_from(drop).unwrap_or(0);
            self.open_at -= drop;
            self.sealed_at = self.sealed_at.saturating_sub(drop);
            if self.words.capacity() > self.words.len() + 64 {
                self.words.shrink_to_fit();
            }
        }
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, oldest first (staleness markers included).
    pub fn range_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        for b in self.blocks_from(mint) {
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

    /// Summarizes the samples with `mint <= t <= maxt` from the window's edges, decoding a few samples per
    /// block instead of all of them. Staleness markers would have to be skipped sample by sample, so a window
    /// touching one (or a block holding one) is [`Window::Unsupported`]; so is one touching a block with a
    /// decrease, since `rate` must then add the counter resets in order.
    pub fn summarize(&self, mint: i64, maxt: i64) -> Window {
        self.summarize_with(mint, maxt, true)
    }

    /// [`Self::summarize`], leaving [`WindowSummary::penultimate`] unset (equal to `last` or another sample
    /// of the window) unless `penultimate`: only `irate` and `idelta` read it, and it costs a decode.
    pub fn summarize_with(&self, mint: i64, maxt: i64, penultimate: bool) -> Window {
        let mut acc = SummaryBuilder::default();
        for b in self.blocks_from(mint) {
            if b.last_timestamp() < mint {
                continue;
            }
            if b.first_timestamp() > maxt {
                return acc.finish(penultimate);
            }
            if !b.is_clean() {
                return Window::Unsupported;
            }
            let from = b.lower_bound(mint);
            let to = if b.last_timestamp() <= maxt {
                b.len()
            } else {
                b.lower_bound(maxt.saturating_add(1))
            };
            if from < to {
                let before_last = (to - from >= 2).then(|| (b, to - 2));
                acc.run(b.sample(from), before_last, b.sample(to - 1), to - from);
            }
            if to < b.len() {
                return acc.finish(penultimate);
            }
        }
        for s in self.tail() {
            if s.timestamp_ms > maxt {
                break;
            }
            if s.timestamp_ms >= mint {
                if is_stale_nan(s.value) {
                    return Window::Unsupported;
                }
                acc.run(*s, None, *s, 1);
            }
        }
        acc.finish(penultimate)
    }

    /// The newest sample with timestamp ≤ `t`.
    pub fn latest_at(&self, t: i64) -> Option<Sample> {
        if let Some(s) = self.tail().iter().rev().find(|s| s.timestamp_ms <= t) {
            return Some(*s);
        }
        let mut found = None;
        for b in self.blocks_from(t) {
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

    /// A resend of any held sample (a sealed block's, the open block's, the tail's; a staleness marker
    /// too) is a duplicate, ignored; the same timestamp with another value, or a timestamp between two
    /// held samples, stays out of order. The series is unchanged either way.
    #[test]
    fn ring_ignores_identical_resends_of_older_samples() {
        let mut r = SampleRing::new();
        let marker = f64::from_bits(surge_model::STALE_NAN_BITS);
        for i in 0..200 {
            let v = if i == 70 { marker } else { i as f64 * 0.5 };
            assert_eq!(r.push(s(i * 1000, v), i64::MAX), Ok(true));
        }
        let before = r.clone();
        // 3 and 64: sealed blocks; 150: the open block; 198: the tail; 70: a marker.
        for i in [0, 3, 64, 150, 198] {
            assert_eq!(
                r.push(s(i * 1000, i as f64 * 0.5), i64::MAX),
                Ok(false),
                "t={i}s"
            );
        }
        assert_eq!(r.push(s(70_000, marker), i64::MAX), Ok(false));
        for (t, v) in [(3_000, 9.0), (3_500, 1.75), (70_000, 35.0), (0, -0.0)] {
            assert_eq!(
                r.push(s(t, v), i64::MAX),
                Err(AppendError::OutOfOrder),
                "t={t} v={v}"
            );
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        r.range_into(i64::MIN, i64::MAX, &mut a);
        before.range_into(i64::MIN, i64::MAX, &mut b);
        assert_eq!(a.len(), 200);
        assert!(same(&a, &b));
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

    /// Encodes `v`, checks every decoding path against it and returns the block's words.
    fn round_trip(v: &[Sample]) -> Vec<u64> {
        let mut words = Vec::new();
        encode_block(v, &mut words);
        let b = BlockRef::new(&words);
        assert_eq!(b.words_len(), words.len());
        let mut out = Vec::new();
        b.decode_into(&mut out);
        assert!(same(&out, v));
        for (i, x) in v.iter().enumerate() {
            assert_eq!(b.value(i).to_bits(), x.value.to_bits(), "value {i}");
            let mut tail = Vec::new();
            b.decode_range(i, i64::MAX, &mut tail);
            assert!(same(&tail, &v[i..]));
        }
        words
    }

    fn mode_of(words: &[u64]) -> u32 {
        BlockRef::new(words).mode()
    }

    #[test]
    fn decimal_gauges_use_scaled_integers() {
        // Latencies with 3 decimals, as a scrape parses "0.183".
        let v: Vec<_> = (0..64)
            .map(|i| s(i * 1000, (150 + (i * 37) % 100) as f64 / 1000.0))
            .collect();
        let words = round_trip(&v);
        assert_eq!(mode_of(&words), MODE_SCALED | 3);
        assert_eq!(BlockRef::new(&words).header(), HEADER_WORDS);
        // 64 residues of ≤ 8 bits, after 4 header words.
        assert!(words.len() <= HEADER_WORDS + 8, "{}", words.len());
        // Percentages with one decimal, negative values, and integers (d = 0).
        let v: Vec<_> = (0..64)
            .map(|i| s(i * 1000, (i - 125) as f64 / 10.0))
            .collect();
        let words = round_trip(&v);
        assert!(mode_of(&words) >= MODE_SCALED && mode_of(&words) != MODE_GORILLA);
        let v: Vec<_> = (0..64).map(|i| s(i * 1000, (i * i) as f64)).collect();
        assert_eq!(mode_of(&round_trip(&v)), MODE_SCALED | SCALED_SLOPE);
        // Durations measured in nanoseconds and printed in seconds ("0.000123456"): 9 digits, ~17-bit
        // residues instead of Gorilla's ~50 bits a value.
        let v: Vec<_> = (0..64)
            .map(|i| {
                let text = format!("{}", (100_000 + (i * 7919) % 60_000) as f64 / 1e9);
                s(i * 1000, text.parse::<f64>().unwrap())
            })
            .collect();
        let words = round_trip(&v);
        assert_eq!(mode_of(&words), MODE_SCALED | 9);
        assert!(words.len() <= HEADER_WORDS + 16, "{}", words.len());
        // -0.0 is not an integer bit for bit.
        let v: Vec<_> = (0..8)
            .map(|i| s(i * 1000, if i == 3 { -0.0 } else { 1.0 }))
            .collect();
        round_trip(&v);
    }

    #[test]
    fn stepping_floats_use_gorilla() {
        // A ratio that holds for a while, then steps.
        let v: Vec<_> = (0..64)
            .map(|i| s(i * 1000, 1.0 / (3.0 + (i / 16) as f64)))
            .collect();
        let words = round_trip(&v);
        assert_eq!(mode_of(&words), MODE_GORILLA);
        assert!(words.len() < HEADER_WORDS + 1 + 8, "{}", words.len());
    }

    #[test]
    fn clean_flag_tracks_resets_and_markers() {
        let up: Vec<_> = (0..10).map(|i| s(i * 1000, i as f64)).collect();
        let mut words = Vec::new();
        encode_block(&up, &mut words);
        assert!(BlockRef::new(&words).is_clean());
        for bad in [0.5, surge_model::stale_nan()] {
            let mut v = up.clone();
            v[5].value = bad;
            let mut words = Vec::new();
            encode_block(&v, &mut words);
            assert!(!BlockRef::new(&words).is_clean());
        }
    }

    /// The window `[mint, maxt]` of `r` through `range_into` (markers dropped) and through `summarize`
    /// must agree on everything the summary reports.
    fn check_summary(r: &SampleRing, mint: i64, maxt: i64) {
        let mut all = Vec::new();
        r.range_into(mint, maxt, &mut all);
        let has_marker = all.iter().any(|x| is_stale_nan(x.value));
        match r.summarize(mint, maxt) {
            Window::Empty => assert!(all.is_empty()),
            Window::Unsupported => {}
            Window::Summary(w) => {
                assert!(!has_marker);
                assert!(same(&[w.first], &all[..1]));
                assert!(same(&[w.last], &all[all.len() - 1..]));
                let pen = all[all.len().saturating_sub(2)];
                assert!(same(&[w.penultimate], &[pen]));
                assert_eq!(w.count, all.len());
                let dec = all.windows(2).any(|p| p[1].value < p[0].value);
                assert_eq!(w.decreases, dec);
            }
        }
    }

    #[test]
    fn summaries_of_clean_counters_are_exact() {
        let mut r = SampleRing::new();
        for i in 0..300 {
            r.push(s(i * 1000 + (i * 7 % 5), (i * 3) as f64), 120_000)
                .unwrap();
        }
        for (mint, maxt) in [(250_000, 280_000), (0, 400_000), (239_500, 299_003), (1, 2)] {
            check_summary(&r, mint, maxt);
            assert!(!matches!(r.summarize(mint, maxt), Window::Unsupported));
        }
    }

    proptest! {
        #[test]
        fn summaries_agree_with_decoding(
            deltas in proptest::collection::vec(1i64..3_000, 1..300),
            steps in proptest::collection::vec(-2i64..20, 300),
            marker in proptest::option::of(0usize..300),
            windows in proptest::collection::vec((0i64..600_000, 0i64..120_000), 8),
        ) {
            let mut r = SampleRing::new();
            let mut t = 0;
            let mut v = 0i64;
            for (i, d) in deltas.iter().enumerate() {
                t += d;
                v += steps[i];
                let value = if marker == Some(i) { surge_model::stale_nan() } else { v as f64 };
                r.push(s(t, value), 300_000).unwrap();
            }
            for (maxt, range) in windows {
                check_summary(&r, maxt - range, maxt);
            }
        }

        #[test]
        fn decimal_and_float_blocks_round_trip(
            digits in 0u32..12,
            base in -1_000_000i64..1_000_000,
            noise in proptest::collection::vec(-300i64..300, 1..BLOCK_SAMPLES),
            ratio in proptest::bool::ANY,
        ) {
            let scale = 10f64.powi(digits as i32);
            let v: Vec<_> = noise
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let x = if ratio {
                        (base + n) as f64 / (7.0 + (i / 8) as f64)
                    } else {
                        (base + n) as f64 / scale
                    };
                    s(i as i64 * 1000, x)
                })
                .collect();
            round_trip(&v);
        }

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
