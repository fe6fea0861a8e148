//! twemproxy's key hashes, bit for bit, for `ketama` placement (`[placement] hash = "..."`).
//!
//! twemproxy hashes keys as C `char`, which is signed on x86: in the FNV family and in hsieh's
//! tail a byte >= 0x80 is sign-extended before mixing. `fnv1a_64` really computes in 32 bits
//! (the 64-bit offset basis and prime truncated), `crc32` keeps only 15 bits of the CRC (as
//! libmemcached did), and `murmur` seeds with `0xdeadbeef * length`. These are reproduced here on
//! purpose so a migration from twemproxy keeps every key where it was.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::Deserialize;

/// A twemproxy key hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyHash {
    /// Jenkins' one-at-a-time hash.
    OneAtATime,
    /// The first four bytes of MD5, little-endian.
    Md5,
    /// twemproxy 0.5's CRC-16: the XMODEM step in an unmasked 32-bit accumulator.
    Crc16,
    /// libmemcached's CRC-32: bits 16..31 of CRC-32, masked to 15 bits.
    Crc32,
    /// Standard CRC-32 (ISO-HDLC).
    Crc32a,
    /// FNV-1, 64-bit state, truncated to 32 bits.
    Fnv1_64,
    /// FNV-1a with the 64-bit constants truncated to 32 bits (twemproxy's default).
    #[default]
    Fnv1a64,
    /// FNV-1, 32-bit.
    Fnv1_32,
    /// FNV-1a, 32-bit.
    Fnv1a32,
    /// Paul Hsieh's SuperFastHash.
    Hsieh,
    /// MurmurHash2 with twemproxy's length-derived seed.
    Murmur,
    /// Bob Jenkins' lookup3 `hashlittle`, initval 13.
    Jenkins,
}

/// Every hash, with its twemproxy config name.
pub const ALL: [(KeyHash, &str); 12] = [
    (KeyHash::OneAtATime, "one_at_a_time"),
    (KeyHash::Md5, "md5"),
    (KeyHash::Crc16, "crc16"),
    (KeyHash::Crc32, "crc32"),
    (KeyHash::Crc32a, "crc32a"),
    (KeyHash::Fnv1_64, "fnv1_64"),
    (KeyHash::Fnv1a64, "fnv1a_64"),
    (KeyHash::Fnv1_32, "fnv1_32"),
    (KeyHash::Fnv1a32, "fnv1a_32"),
    (KeyHash::Hsieh, "hsieh"),
    (KeyHash::Murmur, "murmur"),
    (KeyHash::Jenkins, "jenkins"),
];

impl KeyHash {
    /// The twemproxy config name.
    pub fn as_str(self) -> &'static str {
        ALL.iter()
            .find(|(h, _)| *h == self)
            .map(|(_, n)| *n)
            .unwrap_or("fnv1a_64")
    }

    /// Hashes `key` as twemproxy does.
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            KeyHash::OneAtATime => one_at_a_time(key),
            KeyHash::Md5 => {
                let d = Md5::digest(key);
                u32::from_le_bytes([d[0], d[1], d[2], d[3]])
            }
            KeyHash::Crc16 => {
                // The CRC-16/XMODEM step, but in a 32-bit accumulator never masked to 16 bits:
                // the low half is the CRC, the high half keeps earlier states.
                let mut crc: u32 = 0;
                for &b in key {
                    let index = ((crc >> 8) ^ u32::from(b)) & 0xff;
                    crc = (crc << 8) ^ u32::from(XMODEM[index as usize]);
                }
                crc
            }
            KeyHash::Crc32 => (CRC32.checksum(key) >> 16) & 0x7fff,
            KeyHash::Crc32a => CRC32.checksum(key),
            KeyHash::Fnv1_64 => {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for &b in key {
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                    h ^= signed(b) as u64;
                }
                h as u32
            }
            KeyHash::Fnv1a64 => {
                let mut h: u32 = 0x8422_2325;
                for &b in key {
                    h ^= signed(b) as u32;
                    h = h.wrapping_mul(0x0000_01b3);
                }
                h
            }
            KeyHash::Fnv1_32 => {
                let mut h: u32 = 0x811c_9dc5;
                for &b in key {
                    h = h.wrapping_mul(0x0100_0193);
                    h ^= signed(b) as u32;
                }
                h
            }
            KeyHash::Fnv1a32 => {
                let mut h: u32 = 0x811c_9dc5;
                for &b in key {
                    h ^= signed(b) as u32;
                    h = h.wrapping_mul(0x0100_0193);
                }
                h
            }
            KeyHash::Hsieh => hsieh(key),
            KeyHash::Murmur => murmur(key),
            KeyHash::Jenkins => jenkins(key),
        }
    }
}

/// A C `char` on x86: signed, sign-extended when widened.
#[inline]
fn signed(b: u8) -> i64 {
    i64::from(b as i8)
}

/// The CRC-16/XMODEM (polynomial 0x1021) byte table.
const XMODEM: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fn one_at_a_time(key: &[u8]) -> u32 {
    let mut v: u32 = 0;
    for &b in key {
        v = v.wrapping_add(signed(b) as u32);
        v = v.wrapping_add(v << 10);
        v ^= v >> 6;
    }
    v = v.wrapping_add(v << 3);
    v ^= v >> 11;
    v.wrapping_add(v << 15)
}

fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let mut h = 0xdead_beef_u32.wrapping_mul(len) ^ len;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let get16 = |d: &[u8]| u32::from(d[0]) | (u32::from(d[1]) << 8);
    let mut h: u32 = 0;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        h = h.wrapping_add(get16(c));
        let tmp = (get16(&c[2..]) << 11) ^ h;
        h = (h << 16) ^ tmp;
        h = h.wrapping_add(h >> 11);
    }
    let tail = chunks.remainder();
    match tail.len() {
        3 => {
            h = h.wrapping_add(get16(tail));
            h ^= h << 16;
            // twemproxy reads this byte as a signed char.
            h ^= (signed(tail[2]) as u32) << 18;
            h = h.wrapping_add(h >> 11);
        }
        2 => {
            h = h.wrapping_add(get16(tail));
            h ^= h << 11;
            h = h.wrapping_add(h >> 17);
        }
        1 => {
            h = h.wrapping_add(u32::from(tail[0]));
            h ^= h << 10;
            h = h.wrapping_add(h >> 1);
        }
        _ => {}
    }
    h ^= h << 3;
    h = h.wrapping_add(h >> 5);
    h ^= h << 4;
    h = h.wrapping_add(h >> 17);
    h ^= h << 25;
    h.wrapping_add(h >> 6)
}

fn jenkins(key: &[u8]) -> u32 {
    let mut a = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(13);
    let (mut b, mut c) = (a, a);
    let word = |d: &[u8]| {
        let mut w = [0u8; 4];
        w[..d.len()].copy_from_slice(d);
        u32::from_le_bytes(w)
    };
    let mut rest = key;
    while rest.len() > 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        // mix(a, b, c)
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return c;
    }
    a = a.wrapping_add(word(&rest[..rest.len().min(4)]));
    if rest.len() > 4 {
        b = b.wrapping_add(word(&rest[4..rest.len().min(8)]));
    }
    if rest.len() > 8 {
        c = c.wrapping_add(word(&rest[8..]));
    }
    // final(a, b, c)
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter()
            .find(|(_, n)| *n == s)
            .map(|(h, _)| *h)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown hash `{s}`; expected one of {}", names.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_vectors() {
        // Published check values where twemproxy's hash is a standard one.
        assert_eq!(KeyHash::Crc32a.hash(b"123456789"), 0xCBF4_3926);
        // The low half is CRC-16/XMODEM.
        assert_eq!(KeyHash::Crc16.hash(b"123456789") & 0xffff, 0x31C3);
        assert_eq!(XMODEM[1], 0x1021);
        assert_eq!(XMODEM[255], 0x1ef0);
        assert_eq!(KeyHash::Fnv1a32.hash(b"a"), 0xe40c_292c);
        assert_eq!(KeyHash::Fnv1_32.hash(b"a"), 0x050c_5d7e);
        assert_eq!(
            KeyHash::Md5.hash(b""),
            u32::from_le_bytes([0xd4, 0x1d, 0x8c, 0xd9])
        );
        assert_eq!(KeyHash::OneAtATime.hash(b"a"), 0xca2e_9442);
        assert_eq!(KeyHash::Jenkins.hash(b""), 0xdead_beef_u32.wrapping_add(13));
    }

    #[test]
    fn crc32_keeps_15_bits() {
        let full = KeyHash::Crc32a.hash(b"123456789");
        assert_eq!(KeyHash::Crc32.hash(b"123456789"), (full >> 16) & 0x7fff);
    }

    #[test]
    fn fnv_sign_extends_high_bytes() {
        // With an unsigned byte, 0xff would xor 0x000000ff; twemproxy xors 0xffffffff.
        let h = KeyHash::Fnv1a32.hash(&[0xff]);
        assert_eq!(h, (0x811c_9dc5_u32 ^ 0xffff_ffff).wrapping_mul(0x0100_0193));
    }

    #[test]
    fn names_round_trip() {
        for (h, n) in ALL {
            assert_eq!(n.parse::<KeyHash>().unwrap(), h);
            assert_eq!(h.as_str(), n);
        }
        assert!("sha1".parse::<KeyHash>().is_err());
    }
}
