//! One record: a batch as it is stored on disk.
//!
//! ```text
//! frame:   len u32 LE | crc32c(payload) u32 LE | payload (len bytes)
//! payload: seq u64 | tier u8 | scrape_end_ms i64 | series u32 |
//!          per series: label_block_len u32 | label block | samples u32 | (timestamp_ms i64, value f64)*
//! ```
//!
//! All integers little-endian. The label block is the remote-write encoding the sender already holds
//! (`SeriesMeta::label_block`), so neither writing nor replaying re-encodes labels.

use std::sync::Arc;

use surge_model::{Sample, Tier};
use surge_sender::{Batch, SeriesMeta, SeriesSamples};

/// Bytes before the payload: its length and its checksum.
pub(crate) const FRAME_HEADER: usize = 8;
/// The largest payload accepted when reading: a length beyond it is corruption, not a huge batch.
pub(crate) const MAX_PAYLOAD: usize = 256 << 20;

/// Bytes before the first series: seq, tier, scrape_end_ms, series count.
const PAYLOAD_HEAD: usize = 8 + 1 + 8 + 4;

/// The length of `batch`'s framed record, exactly what [`encode`] appends, without encoding it: a sum
/// over the series (no copying), so `submit` can check the disk budget and leave the encoding to the
/// writer thread.
pub fn encoded_len(batch: &Batch) -> usize {
    FRAME_HEADER
        + PAYLOAD_HEAD
        + batch
            .series
            .iter()
            .map(|s| 4 + s.series.label_block().len() + 4 + 16 * s.samples.len())
            .sum::<usize>()
}

/// Appends the framed record of `batch` with sequence number `seq` to `out`; returns the samples in it.
pub fn encode(seq: u64, batch: &Batch, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(match batch.tier {
        Tier::Critical => 0,
        Tier::Standard => 1,
    });
    out.extend_from_slice(&batch.scrape_end_ms.to_le_bytes());
    out.extend_from_slice(&(batch.series.len() as u32).to_le_bytes());
    let mut samples = 0;
    for s in &batch.series {
        let block = s.series.label_block();
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(block);
        out.extend_from_slice(&(s.samples.len() as u32).to_le_bytes());
        for x in &s.samples {
            out.extend_from_slice(&x.timestamp_ms.to_le_bytes());
            out.extend_from_slice(&x.value.to_bits().to_le_bytes());
        }
        samples += s.samples.len();
    }
    let payload = &out[start + FRAME_HEADER..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    samples
}

/// Why a frame could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The bytes end inside the frame (a torn write at the tail).
    Truncated,
    /// The length is impossible or the checksum does not match.
    Corrupt,
}

/// Splits the frame at the start of `buf`: its payload and the frame's total length.
pub(crate) fn frame(buf: &[u8]) -> Result<(&[u8], usize), FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER) else {
        return Err(FrameError::Truncated);
    };
    let len = u32_at(header, 0) as usize;
    let crc = u32_at(header, 4);
    if !(21..=MAX_PAYLOAD).contains(&len) {
        return Err(FrameError::Corrupt);
    }
    let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(FrameError::Truncated);
    };
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Corrupt);
    }
    Ok((payload, FRAME_HEADER + len))
}

/// The sequence number and sample count of a checked payload, without decoding labels.
pub(crate) fn peek(payload: &[u8]) -> Option<(u64, usize)> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let mut r = Reader {
        buf: payload,
        pos: 17,
    };
    let series = r.u32()? as usize;
    let mut samples = 0;
    for _ in 0..series {
        let block = r.u32()? as usize;
        r.skip(block)?;
        let n = r.u32()? as usize;
        r.skip(n.checked_mul(16)?)?;
        samples += n;
    }
    Some((seq, samples))
}

/// Decodes a checked payload into its sequence number and batch; `None` if it is malformed (which a
/// matching checksum makes a bug or a deliberate forgery, but it is still not a panic).
pub fn decode(payload: &[u8]) -> Option<(u64, Batch)> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let seq = r.u64()?;
    let tier = match r.bytes(1)?.first()? {
        0 => Tier::Critical,
        _ => Tier::Standard,
    };
    let scrape_end_ms = r.u64()? as i64;
    let n = r.u32()? as usize;
    let mut series = Vec::with_capacity(n.min(payload.len() / 8));
    for _ in 0..n {
        let len = r.u32()? as usize;
        let block: Arc<[u8]> = Arc::from(r.bytes(len)?);
        let k = r.u32()? as usize;
        let mut samples = smallvec::SmallVec::with_capacity(k.min(payload.len() / 16));
        for _ in 0..k {
            let timestamp_ms = r.u64()? as i64;
            let value = f64::from_bits(r.u64()?);
            samples.push(Sample {
                timestamp_ms,
                value,
            });
        }
        series.push(SeriesSamples {
            series: SeriesMeta::from_label_block(block),
            samples,
        });
    }
    Some((
        seq,
        Batch {
            tier,
            series,
            scrape_end_ms,
        },
    ))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surge_model::Labels;

    fn batch() -> Batch {
        Batch {
            tier: Tier::Standard,
            series: (0..3)
                .map(|i| SeriesSamples {
                    series: SeriesMeta::new(Labels::from_pairs([
                        ("__name__", "m"),
                        ("i", &i.to_string()),
                    ])),
                    samples: smallvec::smallvec![Sample {
                        timestamp_ms: 1000 + i,
                        value: i as f64 / 3.0,
                    }],
                })
                .collect(),
            scrape_end_ms: 1234,
        }
    }

    #[test]
    fn encoded_len_is_the_framed_length() {
        let mut b = batch();
        b.series[1].samples.push(Sample {
            timestamp_ms: 5000,
            value: f64::NAN,
        });
        let empty = Batch {
            series: Vec::new(),
            ..batch()
        };
        for b in [batch(), b, empty] {
            let mut buf = vec![1, 2, 3];
            encode(9, &b, &mut buf);
            assert_eq!(encoded_len(&b), buf.len() - 3);
        }
    }

    #[test]
    fn a_record_round_trips_and_any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        assert_eq!(encode(7, &batch(), &mut buf), 3);
        let (payload, len) = frame(&buf).unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(peek(payload), Some((7, 3)));
        let (seq, b) = decode(payload).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(b.scrape_end_ms, 1234);
        assert_eq!(b.tier, Tier::Standard);
        for (x, y) in b.series.iter().zip(batch().series.iter()) {
            assert_eq!(x.series, y.series);
            assert_eq!(x.samples[0].timestamp_ms, y.samples[0].timestamp_ms);
            assert_eq!(x.samples[0].value.to_bits(), y.samples[0].value.to_bits());
        }
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(frame(&bad).is_err(), "bit {bit} flipped went unnoticed");
        }
        for cut in 0..buf.len() {
            assert!(frame(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
