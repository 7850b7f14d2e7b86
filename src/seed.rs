//! Reproducible randomness: one root seed, child streams derived by hashing a stream name.
//!
//! A stream depends only on (root seed, name), never on how many other draws came before,
//! so adding a sampling call to a script does not change what any other call draws.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};

/// A named random stream under a root seed. Builtins derive every sub-stream through
/// `child` and `draw`, so a stream's numbers depend only on (root, name), never on what was
/// drawn before or elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    root: u64,
    name: String,
}

impl Stream {
    pub fn new(root: u64, name: impl Into<String>) -> Stream {
        Stream {
            root,
            name: name.into(),
        }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A sub-stream for one part of a computation (e.g. one prompt of a list): `NAME/part`.
    pub fn child(&self, part: &str) -> Stream {
        Stream::new(self.root, format!("{}/{part}", self.name))
    }

    /// The stream of draw `index` (`NAME#index`): each sample of a batch has its own, so
    /// results do not depend on batch size or on the order in which samples are taken.
    pub fn draw(&self, index: usize) -> Stream {
        Stream::new(self.root, format!("{}#{index}", self.name))
    }

    /// The 256-bit seed of this stream.
    pub fn seed(&self) -> [u8; 32] {
        stream_seed(self.root, &self.name)
    }

    pub fn rng(&self) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.seed())
    }

    /// The generator of draw `index` (`self.draw(index).rng()`).
    pub fn sample_rng(&self, index: usize) -> ChaCha20Rng {
        sample_rng(self.root, &self.name, index)
    }
}

impl std::fmt::Display for Stream {
    /// As the run record and assertion messages show a stream.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (root seed {})", self.name, self.root)
    }
}

/// The generator for the stream `name` under `root`.
pub fn stream_rng(root: u64, name: &str) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(stream_seed(root, name))
}

/// The 256-bit seed of stream `name` under `root`: sha256("beb-stream" || root || name).
pub fn stream_seed(root: u64, name: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"beb-stream\0");
    hasher.update(root.to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.finalize().into()
}

/// The generator for draw `index` of stream `name`: each sample of a batch has its own stream,
/// so results do not depend on batch size or on the order in which samples are taken.
pub fn sample_rng(root: u64, name: &str, index: usize) -> ChaCha20Rng {
    stream_rng(root, &format!("{name}#{index}"))
}

/// A run's root seed, resolved in one place: the one given (`--seed`), or a fresh one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootSeed {
    pub value: u64,
    /// Whether beb chose it (then it is printed with a hint, so the run can be repeated).
    pub chosen: bool,
}

impl RootSeed {
    pub fn resolve(given: Option<u64>) -> RootSeed {
        match given {
            Some(value) => RootSeed {
                value,
                chosen: false,
            },
            None => RootSeed {
                value: fresh_root_seed(),
                chosen: true,
            },
        }
    }
}

impl std::fmt::Display for RootSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.value)?;
        if self.chosen {
            f.write_str(" (chosen; pass --seed to repeat)")?;
        }
        Ok(())
    }
}

/// A fresh root seed for runs that were not given one (recorded and printed by the runner).
fn fresh_root_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha256::digest(format!("{nanos}:{}", std::process::id()).as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // Keep seeds short enough to type back in.
    u64::from_le_bytes(bytes) % 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_depend_on_name_and_root_only() {
        let a = stream_rng(7, "prompts").next_u64();
        let b = stream_rng(7, "prompts").next_u64();
        let c = stream_rng(7, "other").next_u64();
        let d = stream_rng(8, "prompts").next_u64();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn children_and_draws_extend_the_name() {
        let s = Stream::new(3, "kl");
        assert_eq!(s.child("prompt2").name(), "kl/prompt2");
        assert_eq!(s.draw(5).name(), "kl#5");
        assert_eq!(
            s.sample_rng(5).next_u64(),
            sample_rng(3, "kl", 5).next_u64()
        );
        assert_eq!(s.draw(5).rng().next_u64(), s.sample_rng(5).next_u64());
    }
}
