//! BLAKE3 and SHA-256 over large inputs, in budgeted, cancellable steps.
//!
//! [`Digester::update_within`] hashes as much of a slice as fits in a [`Budget`], in slices of
//! [`SLICE`] bytes (tens to hundreds of microseconds each), polling the cancel flag between
//! slices, and reports how far it got. One-shot hashing of small inputs is [`digest`].

use crate::compute::{Budget, CancelFlag, Step};
use crate::{Error, Result};
use sha2::Digest as _;

/// Bytes hashed between two polls of the cancel flag and the clock. Large enough for BLAKE3's
/// SIMD paths (which hash many 1 KiB chunks at once), small enough to poll every ~0.1 ms.
pub const SLICE: usize = 256 * 1024;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// BLAKE3, 32-byte output.
    Blake3,
    /// SHA-256, 32-byte output.
    Sha256,
}

impl Algorithm {
    /// Parses an algorithm name (`"blake3"`, `"sha256"`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "blake3" => Ok(Algorithm::Blake3),
            "sha256" => Ok(Algorithm::Sha256),
            other => Err(Error::invalid(format!(
                "unknown digest algorithm {other:?}; valid algorithms: blake3, sha256"
            ))),
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        32
    }
}

/// An incremental hasher of either algorithm.
#[derive(Clone)]
pub enum Digester {
    /// BLAKE3 state.
    Blake3(Box<blake3::Hasher>),
    /// SHA-256 state.
    Sha256(sha2::Sha256),
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Digester::Blake3(_) => "Digester::Blake3",
            Digester::Sha256(_) => "Digester::Sha256",
        })
    }
}

/// Where a budgeted update stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the given slice that were hashed.
    pub consumed: usize,
    /// [`Step::Done`] when the whole slice was hashed, [`Step::More`] when the budget ran out
    /// first, [`Step::Cancelled`] when the flag was set.
    pub step: Step,
}

impl Digester {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Blake3 => Digester::Blake3(Box::new(blake3::Hasher::new())),
            Algorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
        }
    }

    /// Hashes all of `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Blake3(h) => {
                h.update(data);
            }
            Digester::Sha256(h) => h.update(data),
        }
    }

    /// Hashes `data` from the start until it is consumed, `budget` is spent or `cancel` is
    /// set, whichever comes first. At least one slice is hashed unless cancelled, so repeated
    /// calls always make progress.
    pub fn update_within(&mut self, data: &[u8], budget: &Budget, cancel: &CancelFlag) -> Progress {
        let mut consumed = 0;
        for slice in data.chunks(SLICE) {
            if cancel.is_cancelled() {
                return Progress {
                    consumed,
                    step: Step::Cancelled,
                };
            }
            if consumed > 0 && budget.spent() {
                return Progress {
                    consumed,
                    step: Step::More,
                };
            }
            self.update(slice);
            consumed += slice.len();
        }
        Progress {
            consumed,
            step: Step::Done,
        }
    }

    /// The digest of everything hashed so far.
    pub fn finalize(self) -> Vec<u8> {
        match self {
            Digester::Blake3(h) => h.finalize().as_bytes().to_vec(),
            Digester::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// One-shot digest of `data`.
///
/// ```
/// use hotpath_core::digest::{digest, Algorithm};
/// let d = digest(Algorithm::Sha256, b"abc");
/// assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
/// ```
pub fn digest(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut d = Digester::new(algorithm);
    d.update(data);
    d.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // FIPS 180-2 and the BLAKE3 reference (b3sum).
        assert_eq!(
            hex(&digest(Algorithm::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&digest(Algorithm::Sha256, b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&digest(Algorithm::Blake3, b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            hex(&digest(Algorithm::Blake3, b"abc")),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::from_name("blake3"), Ok(Algorithm::Blake3));
        assert_eq!(Algorithm::from_name("sha256"), Ok(Algorithm::Sha256));
        let err = Algorithm::from_name("md5").unwrap_err();
        assert!(err.is_argument_error());
        assert!(err.to_string().contains("blake3, sha256"));
    }

    #[test]
    fn a_spent_budget_still_makes_progress() {
        let data = vec![7u8; SLICE * 3];
        let mut d = Digester::new(Algorithm::Blake3);
        let p = d.update_within(&data, &Budget::new(Duration::ZERO), &CancelFlag::new());
        assert_eq!(
            p,
            Progress {
                consumed: SLICE,
                step: Step::More
            }
        );
    }

    #[test]
    fn cancellation_stops_before_the_next_slice() {
        let data = vec![7u8; SLICE * 3];
        let cancel = CancelFlag::new();
        cancel.cancel();
        let mut d = Digester::new(Algorithm::Sha256);
        let p = d.update_within(&data, &Budget::new(Duration::from_secs(5)), &cancel);
        assert_eq!(
            p,
            Progress {
                consumed: 0,
                step: Step::Cancelled
            }
        );
    }

    #[test]
    fn empty_input_is_done() {
        let mut d = Digester::new(Algorithm::Sha256);
        let p = d.update_within(&[], &Budget::new(Duration::ZERO), &CancelFlag::new());
        assert_eq!(
            p,
            Progress {
                consumed: 0,
                step: Step::Done
            }
        );
        assert_eq!(d.finalize(), digest(Algorithm::Sha256, b""));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Budgeted steps over any split of the input give the one-shot digest.
        #[test]
        fn stepped_equals_one_shot(
            data in proptest::collection::vec(any::<u8>(), 0..(SLICE * 2 + 17)),
            cuts in proptest::collection::vec(0usize..(SLICE * 2 + 17), 0..4),
            blake in any::<bool>(),
        ) {
            let alg = if blake { Algorithm::Blake3 } else { Algorithm::Sha256 };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut d = Digester::new(alg);
            let cancel = CancelFlag::new();
            for w in cuts.windows(2) {
                let mut part = &data[w[0]..w[1]];
                loop {
                    let p = d.update_within(part, &Budget::new(Duration::ZERO), &cancel);
                    part = &part[p.consumed..];
                    if p.step == Step::Done { break; }
                    prop_assert_eq!(p.step, Step::More);
                }
            }
            prop_assert_eq!(d.finalize(), digest(alg, &data));
        }
    }
}
