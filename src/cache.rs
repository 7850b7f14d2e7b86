//! A content-addressed on-disk cache for expensive model calls (samples, scores).
//!
//! An entry is addressed by a [`CacheKey`]: the SHA-256 of a canonical encoding of everything
//! that determines the answer (weight files' sha256, the operation, token ids, sampling
//! parameters, the seed stream and the sample index). Two calls with equal keys must compute
//! equal results; a rerun or a resumed study then reads the stored bytes back instead of
//! recomputing, and gets exactly the same value.
//!
//! Canonical key encoding (version 1), hashed with SHA-256:
//!
//! ```text
//! "beb-cache-v1" 0x00
//! for each part, in the order it was added:
//!     name (UTF-8) 0x00  tag (1 byte)  length (u64 little-endian)  payload
//! ```
//!
//! Tags and payloads: `s` UTF-8 text, `u` u64 LE, `i` i64 LE, `f` f64 bits LE (so -0.0 and
//! 0.0 differ and every NaN payload is kept), `t` token ids as u32 LE each, `b` raw bytes.
//! The constructors name their parts: `op` (the operation), `weights` (a file's sha256, hex),
//! `root_seed` and `stream` (the seed stream), `index` (the sample index).
//!
//! Entries live at `DIR/xx/HASH.bin` (`xx` the first two hex digits); a file holds the magic
//! `beb-cache-v2\n`, HASH (the key's SHA-256: the key it answers), the SHA-256 of the payload,
//! then the payload. An entry that is damaged or answers another key (files swapped or copied
//! by hand) is treated as a miss and rewritten. Writes go through a temporary file and a rename, so concurrent
//! processes (shards of a study on one file system) never see half an entry.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

const KEY_MAGIC: &[u8] = b"beb-cache-v1\0";
/// v2 entries carry the digest of the key they answer (v1 entries are misses).
const FILE_MAGIC: &[u8] = b"beb-cache-v2\n";

/// What determines a cached answer, encoded canonically (see the module docs).
#[derive(Clone, Debug)]
pub struct CacheKey {
    bytes: Vec<u8>,
    /// A readable summary of the parts, for diagnostics.
    parts: Vec<String>,
}

impl CacheKey {
    /// A key for `operation` (e.g. `"sample"`, `"score"`, `"logprobs"`).
    pub fn new(operation: &str) -> CacheKey {
        let key = CacheKey {
            bytes: KEY_MAGIC.to_vec(),
            parts: Vec::new(),
        };
        key.text("op", operation)
    }

    fn part(mut self, name: &str, tag: u8, payload: &[u8], shown: String) -> CacheKey {
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.bytes.push(tag);
        self.bytes
            .extend_from_slice(&(payload.len() as u64).to_le_bytes());
        self.bytes.extend_from_slice(payload);
        self.parts.push(format!("{name}={shown}"));
        self
    }

    /// A text part.
    pub fn text(self, name: &str, value: &str) -> CacheKey {
        self.part(name, b's', value.as_bytes(), format!("{value:?}"))
    }

    /// An unsigned whole-number part.
    pub fn uint(self, name: &str, value: u64) -> CacheKey {
        self.part(name, b'u', &value.to_le_bytes(), value.to_string())
    }

    /// A signed whole-number part.
    pub fn int(self, name: &str, value: i64) -> CacheKey {
        self.part(name, b'i', &value.to_le_bytes(), value.to_string())
    }

    /// A floating-point part, by its exact bits.
    pub fn float(self, name: &str, value: f64) -> CacheKey {
        self.part(
            name,
            b'f',
            &value.to_bits().to_le_bytes(),
            value.to_string(),
        )
    }

    /// A sequence of token ids.
    pub fn tokens(self, name: &str, ids: &[u32]) -> CacheKey {
        let payload: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
        self.part(name, b't', &payload, format!("<{} tokens>", ids.len()))
    }

    /// Raw bytes.
    pub fn bytes(self, name: &str, value: &[u8]) -> CacheKey {
        self.part(name, b'b', value, format!("<{} bytes>", value.len()))
    }

    /// The sha256 (hex) of a weight file the answer depends on; call once per file.
    pub fn weights(self, sha256: &str) -> CacheKey {
        self.text("weights", sha256)
    }

    /// The seed stream the answer draws from.
    pub fn stream(self, root_seed: u64, stream: &str) -> CacheKey {
        self.uint("root_seed", root_seed).text("stream", stream)
    }

    /// The index of the sample within its stream.
    pub fn index(self, index: u64) -> CacheKey {
        self.uint("index", index)
    }

    /// The SHA-256 of the canonical encoding, as 64 hex digits.
    pub fn hex(&self) -> String {
        hex(&self.digest())
    }

    /// The sha256 of the key: its entry's file name, and what the entry says it answers.
    fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }

    /// The parts as `name=value` text (long values summarised).
    pub fn describe(&self) -> String {
        self.parts.join(", ")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file's contents (hex), read in a stream: weight files and run inputs.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// A value that can be stored in the cache and read back bit for bit.
pub trait Cacheable: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl Cacheable for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl Cacheable for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

fn fixed_width<const N: usize, T>(bytes: &[u8], read: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
    if !bytes.len().is_multiple_of(N) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                read(a)
            })
            .collect(),
    )
}

impl Cacheable for Vec<f64> {
    fn encode(&self) -> Vec<u8> {
        self.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        fixed_width(bytes, |a| f64::from_bits(u64::from_le_bytes(a)))
    }
}

impl Cacheable for Vec<f32> {
    fn encode(&self) -> Vec<u8> {
        self.iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        fixed_width(bytes, |a| f32::from_bits(u32::from_le_bytes(a)))
    }
}

impl Cacheable for Vec<u32> {
    fn encode(&self) -> Vec<u8> {
        self.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        fixed_width(bytes, u32::from_le_bytes)
    }
}

impl Cacheable for f64 {
    fn encode(&self) -> Vec<u8> {
        self.to_bits().to_le_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let a: [u8; 8] = bytes.try_into().ok()?;
        Some(f64::from_bits(u64::from_le_bytes(a)))
    }
}

/// Lists of token sequences (e.g. a batch of samples): a u64 count, then each sequence as a
/// u64 length and its ids.
impl Cacheable for Vec<Vec<u32>> {
    fn encode(&self) -> Vec<u8> {
        let mut out = (self.len() as u64).to_le_bytes().to_vec();
        for seq in self {
            out.extend_from_slice(&(seq.len() as u64).to_le_bytes());
            out.extend(seq.iter().flat_map(|t| t.to_le_bytes()));
        }
        out
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let read_u64 = |at: usize| -> Option<u64> {
            let a: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(a))
        };
        let count = read_u64(0)? as usize;
        let mut at = 8;
        let mut out = Vec::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let len = read_u64(at)? as usize;
            at += 8;
            let end = at.checked_add(len.checked_mul(4)?)?;
            out.push(<Vec<u32>>::decode(bytes.get(at..end)?)?);
            at = end;
        }
        (at == bytes.len()).then_some(out)
    }
}

/// Hit and miss counts, for the run record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries that could not be written (full disk, read-only folder): the answers were still
    /// computed, only not kept.
    pub write_errors: u64,
}

/// The on-disk cache, or a disabled one (`--no-cache`) that always computes.
#[derive(Debug, Default)]
pub struct Cache {
    dir: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
    write_errors: AtomicU64,
}

impl Cache {
    /// A cache that stores nothing: every lookup computes (counted as a miss).
    pub fn disabled() -> Cache {
        Cache::default()
    }

    /// A cache in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Cache {
        Cache {
            dir: Some(dir.into()),
            ..Cache::default()
        }
    }

    /// The folder, when enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }

    fn entry_path(&self, key: &CacheKey) -> Option<PathBuf> {
        let hash = hex(&key.digest());
        Some(
            self.dir
                .as_ref()?
                .join(&hash[..2])
                .join(format!("{hash}.bin")),
        )
    }

    /// The stored value for `key`, counting a hit or a miss.
    pub fn get<T: Cacheable>(&self, key: &CacheKey) -> Option<T> {
        let found = self
            .entry_path(key)
            .and_then(|path| fs::read(path).ok())
            .and_then(|bytes| {
                // An entry answers only the key it was stored under: one moved or copied over
                // another's file is a miss, as is one whose payload changed.
                let rest = bytes.strip_prefix(FILE_MAGIC)?;
                let (answers, rest) = rest.split_at_checked(32)?;
                let (digest, payload) = rest.split_at_checked(32)?;
                (answers == key.digest().as_slice() && Sha256::digest(payload).as_slice() == digest)
                    .then_some(payload.to_vec())
            })
            .and_then(|payload| T::decode(&payload));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Store `value` under `key` (atomically; failures are counted, not raised).
    pub fn put<T: Cacheable>(&self, key: &CacheKey, value: &T) {
        let Some(path) = self.entry_path(key) else {
            return;
        };
        let payload = value.encode();
        let mut bytes = FILE_MAGIC.to_vec();
        bytes.extend_from_slice(&key.digest());
        bytes.extend_from_slice(&Sha256::digest(&payload));
        bytes.extend_from_slice(&payload);
        if write_atomic(&path, &bytes).is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The cached value for `key`, or else `compute()`'s, which is then stored.
    pub fn get_or_compute<T: Cacheable, E>(
        &self,
        key: &CacheKey,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let value = compute()?;
        self.put(key, &value);
        Ok(value)
    }
}

/// Write through a uniquely named temporary file in the same folder, then rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let temp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("beb-cache-unit-{name}-{}", std::process::id()))
    }

    #[test]
    fn keys_depend_on_every_part_and_its_name() {
        let base = || {
            CacheKey::new("sample")
                .weights("ab")
                .stream(1, "s")
                .index(0)
        };
        assert_eq!(base().hex(), base().hex());
        assert_ne!(base().hex(), base().index(1).hex());
        assert_ne!(
            CacheKey::new("sample").uint("a", 1).hex(),
            CacheKey::new("sample").uint("b", 1).hex()
        );
        assert_ne!(
            CacheKey::new("x").float("t", 0.0).hex(),
            CacheKey::new("x").float("t", -0.0).hex()
        );
        // Length prefixes keep concatenations apart.
        assert_ne!(
            CacheKey::new("x").text("a", "bc").text("d", "").hex(),
            CacheKey::new("x").text("a", "b").text("cd", "").hex()
        );
        assert_eq!(base().hex().len(), 64);
        assert!(base().describe().contains("index=0"));
    }

    #[test]
    fn values_round_trip_bit_for_bit() {
        let xs = vec![0.1, -0.0, f64::INFINITY, f64::MIN_POSITIVE, 1e-300];
        let back = <Vec<f64>>::decode(&xs.encode()).unwrap_or_default();
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            xs.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let seqs = vec![vec![1u32, 2, 3], vec![], vec![u32::MAX]];
        assert_eq!(<Vec<Vec<u32>>>::decode(&seqs.encode()), Some(seqs));
        assert_eq!(<Vec<Vec<u32>>>::decode(&[1, 2, 3]), None);
        assert_eq!(<Vec<u32>>::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn damaged_entries_are_misses() {
        let dir = scratch("damaged");
        let cache = Cache::at(&dir);
        let key = CacheKey::new("t");
        cache.put(&key, &vec![1.0f64, 2.0]);
        let path = cache.entry_path(&key).unwrap_or_default();
        let mut bytes = fs::read(&path).unwrap_or_default();
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        let _ = fs::write(&path, bytes);
        assert_eq!(cache.get::<Vec<f64>>(&key), None);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn disabled_caches_always_compute() {
        let cache = Cache::disabled();
        let mut calls = 0;
        for _ in 0..2 {
            let v: Result<f64, ()> = cache.get_or_compute(&CacheKey::new("x"), || {
                calls += 1;
                Ok(1.5)
            });
            assert_eq!(v, Ok(1.5));
        }
        assert_eq!(calls, 2);
        assert_eq!(cache.stats().hits, 0);
    }
}
