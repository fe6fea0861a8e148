//! The stored form of a cached value: a small versioned header, then the encoded (and maybe
//! compressed) payload. Pure functions, no I/O.
//!
//! ```text
//! offset size  field
//! 0      2     magic: the ASCII bytes "SC"
//! 2      1     envelope version: 1
//! 3      1     codec: 1 = JSON (serde_json), 2 = MessagePack (rmp-serde, structs as maps)
//! 4      1     compression: 0 = none, 1 = LZ4 block, prefixed with the uncompressed length
//!              as a little-endian u32 (lz4_flex's `compress_prepend_size`)
//! 5      1     flags: bit 0 = negative (a cached "does not exist"; the payload is the
//!              codec's null); other bits 0
//! 6      4     load time: how long the loader took, milliseconds, big-endian u32 (0 for `set`)
//! 10     8     logical expiry: Unix time in milliseconds, big-endian u64. Readers treat the
//!              value as fresh before it and expired (stale) from it on; the Redis TTL of the
//!              key is longer by the `stale_if_error` window.
//! 18     ...   payload
//! ```
//!
//! Anything else (a wrong magic, an unknown version, codec, compression or flag, a truncated
//! header, a payload that does not decompress or decode) is a [`DecodeError`], which callers
//! treat as a miss.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind};

/// The first two bytes of every envelope.
pub(crate) const MAGIC: [u8; 2] = *b"SC";
/// The envelope version this library writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 18;
/// The largest payload decompressed (Redis's largest value): a corrupt length prefix cannot
/// make a reader allocate more.
const MAX_DECOMPRESSED: usize = 512 * 1024 * 1024;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_LZ4: u8 = 1;
const FLAG_NEGATIVE: u8 = 1;

/// How values are serialized before they are stored.
///
/// Both are self-describing formats that other languages read; the codec is recorded in each
/// stored value, so a cache whose codec changes still reads values written with the other.
///
/// ```
/// use shardis::cache::Codec;
/// assert_eq!(Codec::default(), Codec::Json);
/// assert_eq!(Codec::MessagePack.as_str(), "msgpack");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON through `serde_json` (the default): readable in `redis-cli`, larger.
    #[default]
    Json,
    /// MessagePack through `rmp-serde`, structs written as maps (field names kept, so added
    /// optional fields stay readable): smaller and faster than JSON.
    MessagePack,
}

impl Codec {
    /// The codec's short name: `json` or `msgpack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::MessagePack => "msgpack",
        }
    }

    fn id(self) -> u8 {
        match self {
            Codec::Json => 1,
            Codec::MessagePack => 2,
        }
    }

    fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Json),
            2 => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// The codec's encoding of `None` / unit: a payload equal to it is a negative entry.
    fn null(self) -> &'static [u8] {
        match self {
            Codec::Json => b"null",
            Codec::MessagePack => &[0xc0],
        }
    }

    fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
        match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Codec::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        }
    }

    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stored value could not be read: it was not written by this layer, was written by a
/// newer version of it, is corrupt, or no longer fits the type asked for (an older schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    reason: String,
}

impl DecodeError {
    fn new(reason: impl Into<String>) -> DecodeError {
        DecodeError {
            reason: reason.into(),
        }
    }

    /// What is wrong with the stored value (never quotes the value).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "undecodable cached value: {}", self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// The header fields of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) codec: Codec,
    pub(crate) compressed: bool,
    pub(crate) negative: bool,
    /// How long the value's load took, in milliseconds.
    pub(crate) load_ms: u32,
    /// When the value stops being fresh, Unix milliseconds.
    pub(crate) expires_at_ms: u64,
}

impl Meta {
    /// Whether the value is still fresh at `now_ms`.
    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// What an encoding needs besides the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoding {
    pub(crate) codec: Codec,
    /// Compress payloads longer than this many bytes.
    pub(crate) compress_above: usize,
}

/// Encodes `value` into an envelope; returns it and whether the value is the codec's null (a
/// negative entry).
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    how: Encoding,
    load_ms: u32,
    expires_at_ms: u64,
) -> Result<(Vec<u8>, bool), Error> {
    let payload = how.codec.encode(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("the value cannot be encoded as {}: {e}", how.codec),
        )
    })?;
    let negative = payload == how.codec.null();
    Ok((
        seal(how, negative, load_ms, expires_at_ms, payload),
        negative,
    ))
}

/// The envelope of a negative entry (the codec's null).
pub(crate) fn negative(how: Encoding, load_ms: u32, expires_at_ms: u64) -> Vec<u8> {
    seal(how, true, load_ms, expires_at_ms, how.codec.null().to_vec())
}

fn seal(
    how: Encoding,
    negative: bool,
    load_ms: u32,
    expires_at_ms: u64,
    payload: Vec<u8>,
) -> Vec<u8> {
    let compress = payload.len() > how.compress_above && payload.len() <= u32::MAX as usize;
    let body = if compress {
        lz4_flex::block::compress_prepend_size(&payload)
    } else {
        payload
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(how.codec.id());
    out.push(if compress {
        COMPRESSION_LZ4
    } else {
        COMPRESSION_NONE
    });
    out.push(if negative { FLAG_NEGATIVE } else { 0 });
    out.extend_from_slice(&load_ms.to_be_bytes());
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Sets the logical expiry of an envelope made by [`encode`] or [`negative`].
pub(crate) fn set_expiry(envelope: &mut [u8], expires_at_ms: u64) {
    if let Some(field) = envelope.get_mut(10..HEADER_LEN) {
        field.copy_from_slice(&expires_at_ms.to_be_bytes());
    }
}

/// Reads the header of a stored value.
pub(crate) fn meta(bytes: &[u8]) -> Result<Meta, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::new(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte envelope header",
            bytes.len()
        )));
    }
    if bytes[0..2] != MAGIC {
        return Err(DecodeError::new(
            "no envelope magic (not written by shardis::cache)",
        ));
    }
    if bytes[2] != VERSION {
        return Err(DecodeError::new(format!(
            "envelope version {} (this library reads {VERSION})",
            bytes[2]
        )));
    }
    let codec = Codec::from_id(bytes[3])
        .ok_or_else(|| DecodeError::new(format!("unknown codec {}", bytes[3])))?;
    let compressed = match bytes[4] {
        COMPRESSION_NONE => false,
        COMPRESSION_LZ4 => true,
        other => return Err(DecodeError::new(format!("unknown compression {other}"))),
    };
    if bytes[5] & !FLAG_NEGATIVE != 0 {
        return Err(DecodeError::new(format!("unknown flags {:#04x}", bytes[5])));
    }
    let mut load = [0u8; 4];
    load.copy_from_slice(&bytes[6..10]);
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(&bytes[10..18]);
    Ok(Meta {
        codec,
        compressed,
        negative: bytes[5] & FLAG_NEGATIVE != 0,
        load_ms: u32::from_be_bytes(load),
        expires_at_ms: u64::from_be_bytes(expiry),
    })
}

/// Decodes the payload of a stored value whose header is `meta`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], meta: &Meta) -> Result<T, DecodeError> {
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    if meta.compressed {
        let claimed = body
            .get(0..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| DecodeError::new("compressed payload without its length"))?;
        if claimed > MAX_DECOMPRESSED {
            return Err(DecodeError::new(format!(
                "compressed payload claims {claimed} bytes"
            )));
        }
        let plain = lz4_flex::block::decompress_size_prepended(body)
            .map_err(|e| DecodeError::new(format!("LZ4 payload does not decompress: {e}")))?;
        meta.codec.decode(&plain).map_err(|e| codec_error(meta, e))
    } else {
        meta.codec.decode(body).map_err(|e| codec_error(meta, e))
    }
}

fn codec_error(meta: &Meta, e: String) -> DecodeError {
    DecodeError::new(format!("{} payload does not decode: {e}", meta.codec))
}

/// Reads a whole stored value.
pub(crate) fn open<T: DeserializeOwned>(bytes: &[u8]) -> Result<(Meta, T), DecodeError> {
    let meta = meta(bytes)?;
    let value = decode(bytes, &meta)?;
    Ok((meta, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct User {
        id: u32,
        name: String,
    }

    fn how(codec: Codec, compress_above: usize) -> Encoding {
        Encoding {
            codec,
            compress_above,
        }
    }

    #[test]
    fn round_trips_with_both_codecs_compressed_or_not() {
        let user = User {
            id: 7,
            name: "a".repeat(300),
        };
        for codec in [Codec::Json, Codec::MessagePack] {
            for above in [0, 10_000] {
                let (bytes, negative) = encode(&user, how(codec, above), 12, 99).unwrap();
                assert!(!negative);
                let (meta, back): (Meta, User) = open(&bytes).unwrap();
                assert_eq!(back, user);
                assert_eq!(
                    (meta.codec, meta.load_ms, meta.expires_at_ms),
                    (codec, 12, 99)
                );
                assert_eq!(meta.compressed, above == 0);
                if above == 0 {
                    assert!(bytes.len() < 100, "300 repeated bytes compress");
                }
            }
        }
    }

    #[test]
    fn header_layout_is_the_documented_one() {
        let (bytes, _) = encode(&1u8, how(Codec::Json, 1024), 0x0102_0304, 0x0506).unwrap();
        assert_eq!(&bytes[..6], &[b'S', b'C', 1, 1, 0, 0]);
        assert_eq!(&bytes[6..10], &[1, 2, 3, 4]);
        assert_eq!(&bytes[10..18], &[0, 0, 0, 0, 0, 0, 5, 6]);
        assert_eq!(&bytes[18..], b"1");
    }

    #[test]
    fn none_is_a_negative_entry_in_both_codecs() {
        for codec in [Codec::Json, Codec::MessagePack] {
            let (bytes, negative) = encode(&None::<u32>, how(codec, 0), 0, 1).unwrap();
            assert!(negative);
            let (meta, back): (Meta, Option<u32>) = open(&bytes).unwrap();
            assert!(meta.negative);
            assert_eq!(back, None);
            assert_eq!(negative_bytes(codec), bytes.len());
        }
    }

    fn negative_bytes(codec: Codec) -> usize {
        negative(how(codec, 0), 0, 1).len()
    }

    #[test]
    fn garbage_and_foreign_values_are_decode_errors_never_panics() {
        let (good, _) = encode(&"x".repeat(5000), how(Codec::MessagePack, 0), 0, 1).unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            b"hello".to_vec(),
            b"SC".to_vec(),
            good[..HEADER_LEN].to_vec(),
            good[..good.len() / 2].to_vec(),
        ];
        for (at, byte) in [(2, 9), (3, 9), (4, 7), (5, 0x80)] {
            let mut bad = good.clone();
            bad[at] = byte;
            cases.push(bad);
        }
        // A length prefix that claims 4 GiB.
        let mut huge = good.clone();
        huge[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0xff; 4]);
        cases.push(huge);
        for (i, case) in cases.iter().enumerate() {
            let r: Result<(Meta, String), _> = open(case);
            assert!(r.is_err(), "case {i} decoded");
        }
        // Fuzz: every prefix and single-byte corruption either decodes or errs.
        for i in 0..good.len().min(200) {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let _ = open::<String>(&bad);
        }
    }

    #[test]
    fn an_older_schema_is_a_decode_error() {
        let (bytes, _) = encode(&"just a string", how(Codec::Json, 1024), 0, 1).unwrap();
        let e = open::<User>(&bytes).unwrap_err();
        assert!(e.reason().contains("json payload does not decode"), "{e}");
    }
}
