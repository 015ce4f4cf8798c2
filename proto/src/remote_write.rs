//! Prometheus remote-write 1.0: `prometheus.WriteRequest` protobuf, snappy block compression.
//!
//! The hot paths are written by hand:
//! - encoding appends one `timeseries` field per series from a *pre-encoded label block* (a series' labels
//!   are encoded once, when the agent first sees the series, and reused on every scrape);
//! - decoding walks the buffer and hands out borrowed views, so ingest allocates nothing per sample.
//!
//! The prost message types ([`WriteRequest`] and friends) exist for tests, tools and as a decoding oracle.

use surge_model::{Labels, Sample};

/// Headers a remote-write 1.0 sender must set.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub const VERSION: &str = "0.1.0";

/// `prometheus.WriteRequest` (only the fields remote-write 1.0 senders use).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<ProtoSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a remote-write body could not be decoded. Each maps to a 400 on the receiving side.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not valid snappy block data.
    #[error("invalid snappy block data: {0}")]
    Snappy(String),
    /// The uncompressed size announced by the snappy header is over the limit.
    #[error("decompressed size {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The protobuf is malformed: truncated, a bad varint, or an unexpected wire type.
    #[error("invalid protobuf at byte {offset}: {what}")]
    Protobuf { offset: usize, what: &'static str },
    /// A label name or value is not UTF-8.
    #[error("label at byte {offset} is not valid UTF-8")]
    Utf8 { offset: usize },
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_len_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes the `labels` fields of a `TimeSeries` for `labels` (already sorted, unique, as `Labels` guarantees).
/// The result is reused for every sample of the series.
pub fn encode_label_block(labels: &Labels) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * 24);
    let mut one = Vec::with_capacity(64);
    for l in labels.iter() {
        one.clear();
        put_len_field(&mut one, 0x0a, l.name.as_bytes());
        put_len_field(&mut one, 0x12, l.value.as_bytes());
        put_len_field(&mut out, 0x0a, &one);
    }
    out
}

/// Decodes a block made by [`encode_label_block`] back into a label set (used off the hot path, e.g. for
/// per-destination relabeling of a new series).
pub fn decode_label_block(block: &[u8]) -> Result<Labels, DecodeError> {
    let mut r = Reader::new(block, 0);
    let mut pairs = Vec::new();
    while !r.done() {
        let key = r.varint()?;
        if key != 0x0a {
            r.skip(key & 7)?;
            continue;
        }
        let (b, off) = r.bytes()?;
        pairs.push(decode_label(b, off)?);
    }
    Ok(Labels::from_pairs(pairs))
}

/// Size of one encoded `Sample` message body.
fn sample_body_len(s: &Sample) -> usize {
    // value: tag + 8 bytes; timestamp: tag + varint (0 is omitted by proto3, but writing it is legal
    // and keeps the encoder branch-free; receivers accept it).
    9 + 1 + varint_len(s.timestamp_ms as u64)
}

/// Appends one `WriteRequest.timeseries` field: the pre-encoded `label_block` and `samples` in order.
pub fn encode_series(out: &mut Vec<u8>, label_block: &[u8], samples: &[Sample]) {
    let samples_len: usize = samples
        .iter()
        .map(|s| {
            let b = sample_body_len(s);
            1 + varint_len(b as u64) + b
        })
        .sum();
    let series_len = label_block.len() + samples_len;
    out.reserve(1 + varint_len(series_len as u64) + series_len);
    out.push(0x0a);
    put_varint(out, series_len as u64);
    out.extend_from_slice(label_block);
    for s in samples {
        out.push(0x12);
        put_varint(out, sample_body_len(s) as u64);
        out.push(0x09);
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
        out.push(0x10);
        put_varint(out, s.timestamp_ms as u64);
    }
}

/// Compresses an encoded `WriteRequest` with snappy's block format (not the framed format).
pub fn compress(raw: &[u8], encoder: &mut snap::raw::Encoder) -> Vec<u8> {
    let mut out = Vec::new();
    let n = compress_into(raw, encoder, &mut out).len();
    out.truncate(n);
    out
}

/// Compresses `raw` into `scratch` (grown to the maximum compressed length when needed, never shrunk)
/// and returns the compressed bytes: a sender that reuses `scratch` neither zeroes nor reallocates a
/// body-sized buffer per request.
pub fn compress_into<'a>(
    raw: &[u8],
    encoder: &mut snap::raw::Encoder,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    let need = snap::raw::max_compress_len(raw.len());
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    match encoder.compress(raw, scratch) {
        Ok(n) => &scratch[..n],
        // Unreachable: the buffer has the maximum compressed length. Fall back to a fresh Vec anyway.
        Err(_) => {
            *scratch = encoder.compress_vec(raw).unwrap_or_default();
            scratch
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decompresses a snappy block body into `buf`, refusing before allocating when the announced size is over
/// `limit`.
pub fn decompress(
    body: &[u8],
    limit: usize,
    decoder: &mut snap::raw::Decoder,
    buf: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    buf.clear();
    buf.resize(size, 0);
    let n = decoder
        .decompress(body, buf)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    buf.truncate(n);
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError::Protobuf {
            offset: self.base + self.pos,
            what,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn bytes(&mut self) -> Result<(&'a [u8], usize), DecodeError> {
        let len = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length past the end of the message"))?;
        self.pos = end;
        Ok((&self.buf[start..end], self.base + start))
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("truncated fixed64"))?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn skip(&mut self, wire_type: u64) -> Result<(), DecodeError> {
        match wire_type {
            0 => self.varint().map(|_| ()),
            1 => self.fixed64().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos += 4;
                Ok(())
            }
            _ => Err(self.err("unsupported wire type")),
        }
    }
}

/// A borrowed view of one `TimeSeries`, already structurally validated.
#[derive(Debug, Clone, Copy)]
pub struct SeriesRef<'a> {
    buf: &'a [u8],
    base: usize,
}

impl<'a> SeriesRef<'a> {
    /// The series' labels in wire order (senders must sort them; receivers decide what to do if not).
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut r = Reader::new(self.buf, self.base);
        std::iter::from_fn(move || {
            while !r.done() {
                let key = r.varint().ok()?;
                if key == 0x0a {
                    let (b, off) = r.bytes().ok()?;
                    return decode_label(b, off).ok();
                }
                r.skip(key & 7).ok()?;
            }
            None
        })
    }

    /// The series' float samples in wire order.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + 'a {
        let mut r = Reader::new(self.buf, self.base);
        std::iter::from_fn(move || {
            while !r.done() {
                let key = r.varint().ok()?;
                if key == 0x12 {
                    let (b, off) = r.bytes().ok()?;
                    return decode_sample(b, off).ok();
                }
                r.skip(key & 7).ok()?;
            }
            None
        })
    }
}

fn decode_label(buf: &[u8], base: usize) -> Result<(&str, &str), DecodeError> {
    let mut r = Reader::new(buf, base);
    let (mut name, mut value) = ("", "");
    while !r.done() {
        let key = r.varint()?;
        match key {
            0x0a | 0x12 => {
                let (b, off) = r.bytes()?;
                let s = std::str::from_utf8(b).map_err(|_| DecodeError::Utf8 { offset: off })?;
                if key == 0x0a {
                    name = s;
                } else {
                    value = s;
                }
            }
            _ => r.skip(key & 7)?,
        }
    }
    Ok((name, value))
}

fn decode_sample(buf: &[u8], base: usize) -> Result<Sample, DecodeError> {
    let mut r = Reader::new(buf, base);
    let mut s = Sample {
        timestamp_ms: 0,
        value: 0.0,
    };
    while !r.done() {
        let key = r.varint()?;
        match key {
            0x09 => s.value = f64::from_bits(r.fixed64()?),
            0x10 => s.timestamp_ms = r.varint()? as i64,
            _ => r.skip(key & 7)?,
        }
    }
    Ok(s)
}

/// Validates a decompressed `WriteRequest` in one pass and calls `f` for every time series.
///
/// Validation is complete before the callback sees a series whose structure is broken: every label and
/// sample of a series is checked before `f` is called for it, so `SeriesRef`'s iterators never fail.
/// Fields other than labels and samples (exemplars, native histograms, metadata) are skipped.
pub fn for_each_series<'a, E>(
    buf: &'a [u8],
    mut f: impl FnMut(SeriesRef<'a>) -> Result<(), E>,
) -> Result<Result<(), E>, DecodeError> {
    let mut r = Reader::new(buf, 0);
    while !r.done() {
        let key = r.varint()?;
        if key != 0x0a {
            r.skip(key & 7)?;
            continue;
        }
        let (series, base) = r.bytes()?;
        validate_series(series, base)?;
        if let Err(e) = f(SeriesRef { buf: series, base }) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

fn validate_series(buf: &[u8], base: usize) -> Result<(), DecodeError> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let key = r.varint()?;
        match key {
            0x0a => {
                let (b, off) = r.bytes()?;
                decode_label(b, off)?;
            }
            0x12 => {
                let (b, off) = r.bytes()?;
                decode_sample(b, off)?;
            }
            _ => r.skip(key & 7)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn labels() -> Labels {
        Labels::from_pairs([("__name__", "up"), ("job", "node"), ("instance", "a:1")])
    }

    #[test]
    fn hand_encoding_matches_prost_decoding() {
        let block = encode_label_block(&labels());
        let mut raw = Vec::new();
        let samples = [
            Sample {
                timestamp_ms: 1_700_000_000_000,
                value: 1.5,
            },
            Sample {
                timestamp_ms: -5,
                value: surge_model::stale_nan(),
            },
        ];
        encode_series(&mut raw, &block, &samples);
        encode_series(&mut raw, &block, &samples[..1]);
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(decode_label_block(&block).unwrap(), labels());
        let ts = &req.timeseries[0];
        let names: Vec<_> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "instance", "job"]);
        assert_eq!(ts.samples[0].timestamp, 1_700_000_000_000);
        assert_eq!(ts.samples[0].value, 1.5);
        assert_eq!(ts.samples[1].timestamp, -5);
        assert!(surge_model::is_stale_nan(ts.samples[1].value));
    }

    #[test]
    fn borrowed_decoder_matches_prost_encoding() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "x".into(),
                    },
                    Label {
                        name: "a".into(),
                        value: "ü".into(),
                    },
                ],
                samples: vec![ProtoSample {
                    value: 2.0,
                    timestamp: 7,
                }],
            }],
        };
        let raw = req.encode_to_vec();
        let mut seen = Vec::new();
        for_each_series(&raw, |s| {
            let l: Vec<_> = s.labels().map(|(n, v)| format!("{n}={v}")).collect();
            let v: Vec<_> = s.samples().collect();
            seen.push((l, v));
            Ok::<(), ()>(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, ["__name__=x", "a=ü"]);
        assert_eq!(
            seen[0].1,
            [Sample {
                timestamp_ms: 7,
                value: 2.0
            }]
        );
    }

    /// Prometheus 3's UTF-8 names travel as they are: decoding checks only that names and values are
    /// UTF-8 (the name scheme is the receiver's to apply), and invalid UTF-8 is refused with its offset.
    #[test]
    fn utf8_names_round_trip_and_invalid_utf8_is_refused() {
        let labels = Labels::from_pairs([("__name__", "my.metric"), ("k.8s", "v"), ("ü ñ", "x")]);
        let block = encode_label_block(&labels);
        let mut raw = Vec::new();
        encode_series(
            &mut raw,
            &block,
            &[Sample {
                timestamp_ms: 1,
                value: 1.0,
            }],
        );
        let mut seen = Vec::new();
        for_each_series(&raw, |s| {
            seen.extend(s.labels().map(|(n, v)| format!("{n}={v}")));
            Ok::<(), ()>(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen, ["__name__=my.metric", "k.8s=v", "ü ñ=x"]);
        for (n, v) in labels.iter().map(|l| (&*l.name, &*l.value)) {
            assert!(
                surge_model::NameValidationScheme::Utf8.is_valid_label_name(n),
                "{n}"
            );
            assert!(!v.is_empty());
        }
        // A label name that is not UTF-8.
        let bad = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![],
            }],
        }
        .encode_to_vec();
        let at = bad.iter().position(|&b| b == b'a').unwrap();
        let mut bad = bad;
        bad[at] = 0xff;
        assert!(matches!(
            for_each_series(&bad, |_| Ok::<(), ()>(())),
            Err(DecodeError::Utf8 { .. })
        ));
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors_not_panics() {
        let block = encode_label_block(&labels());
        let mut raw = Vec::new();
        encode_series(
            &mut raw,
            &block,
            &[Sample {
                timestamp_ms: 1,
                value: 1.0,
            }],
        );
        for cut in 0..raw.len() {
            let r = for_each_series(&raw[..cut], |_| Ok::<(), ()>(()));
            if cut > 0 {
                assert!(r.is_err(), "cut at {cut} should fail");
            }
        }
        assert!(for_each_series(&[0xff; 16], |_| Ok::<(), ()>(())).is_err());
    }

    #[test]
    fn snappy_limit_is_checked_before_allocating() {
        let mut enc = snap::raw::Encoder::new();
        let body = compress(&[7u8; 10_000], &mut enc);
        let mut dec = snap::raw::Decoder::new();
        let mut buf = Vec::new();
        assert_eq!(
            decompress(&body, 100, &mut dec, &mut buf),
            Err(DecodeError::TooLarge {
                size: 10_000,
                limit: 100
            })
        );
        decompress(&body, 10_000, &mut dec, &mut buf).unwrap();
        assert_eq!(buf.len(), 10_000);
        assert!(matches!(
            decompress(
                b"\xff\xff\xff\xff\x0fgarbage",
                usize::MAX,
                &mut dec,
                &mut buf
            ),
            Err(DecodeError::Snappy(_)) | Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = for_each_series(&bytes, |s| { s.labels().count(); s.samples().count(); Ok::<(), ()>(()) });
        }
    }
}
