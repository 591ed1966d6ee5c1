//! Exemplars: the last traced record of a counter, of each classic bucket of a distribution
//! and of a summary, kept beside the series and exported in OpenMetrics and protobuf.
//!
//! A series allocates its exemplar slots on its first record that carries one, so a series
//! (and a record) without exemplars pays nothing but an empty `OnceLock` word. Slots are
//! behind a mutex taken only by records that carry an exemplar and by scrapes.

use crate::error::{Error, Result};
use std::sync::Mutex;

/// Most characters (Unicode code points) of an exemplar's label names and values together,
/// OpenMetrics' limit.
pub const MAX_EXEMPLAR_CHARS: usize = 128;
/// Most labels of one exemplar.
pub const MAX_EXEMPLAR_LABELS: usize = 8;

/// One exemplar: its labels (a trace id, usually), the value recorded and when (Unix
/// milliseconds, wall clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// `(name, value)` pairs, names valid label names.
    pub labels: Vec<(String, String)>,
    /// The value recorded (1 for a counter: its increment).
    pub value: f64,
    /// Unix time of the record, in milliseconds.
    pub timestamp_ms: u64,
}

impl Exemplar {
    /// An exemplar, checked: 1 to [`MAX_EXEMPLAR_LABELS`] labels with valid, distinct names,
    /// at most [`MAX_EXEMPLAR_CHARS`] characters in all, and a finite value.
    pub fn new(labels: Vec<(String, String)>, value: f64, timestamp_ms: u64) -> Result<Self> {
        if labels.is_empty() || labels.len() > MAX_EXEMPLAR_LABELS {
            return Err(Error::invalid(format!(
                "an exemplar has 1 to {MAX_EXEMPLAR_LABELS} labels, got {}",
                labels.len()
            )));
        }
        let chars: usize = labels
            .iter()
            .map(|(n, v)| n.chars().count() + v.chars().count())
            .sum();
        if chars > MAX_EXEMPLAR_CHARS {
            return Err(Error::invalid(format!(
                "an exemplar's labels have at most {MAX_EXEMPLAR_CHARS} characters, got {chars}"
            )));
        }
        for (i, (name, _)) in labels.iter().enumerate() {
            if !super::valid_name(name, false) || name.starts_with("__") {
                return Err(Error::invalid(format!(
                    "{name:?} is not a valid exemplar label name"
                )));
            }
            if labels[..i].iter().any(|(other, _)| other == name) {
                return Err(Error::invalid(format!("duplicate exemplar label {name:?}")));
            }
        }
        crate::error::finite("value", value)?;
        Ok(Exemplar {
            labels,
            value,
            timestamp_ms,
        })
    }
}

/// The exemplar slots of one series: one per classic bucket (the last one for `+Inf`) of a
/// distribution with buckets, else one.
#[derive(Debug)]
pub struct Exemplars {
    slots: Mutex<Box<[Option<Exemplar>]>>,
}

impl Exemplars {
    /// `n` empty slots (at least one).
    pub fn new(n: usize) -> Self {
        Exemplars {
            slots: Mutex::new(vec![None; n.max(1)].into_boxed_slice()),
        }
    }

    /// Keeps `exemplar` in slot `index` (clamped to the last slot), replacing what was there.
    pub fn set(&self, index: usize, exemplar: Exemplar) {
        // A panic while the lock is held cannot leave a slot half written: a slot is one
        // assignment. So a poisoned lock still holds consistent slots.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let last = slots.len() - 1;
        slots[index.min(last)] = Some(exemplar);
    }

    /// A copy of every slot.
    pub fn read(&self) -> Vec<Option<Exemplar>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.to_vec()
    }

    /// Approximate bytes held.
    pub fn memory(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::size_of::<Self>()
            + slots.len() * std::mem::size_of::<Option<Exemplar>>()
            + slots
                .iter()
                .flatten()
                .map(|e| {
                    e.labels
                        .iter()
                        .map(|(n, v)| 48 + n.len() + v.len())
                        .sum::<usize>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exemplars_are_checked() {
        assert!(Exemplar::new(labels(&[("trace_id", "abc")]), 1.0, 0).is_ok());
        let long = "é".repeat(MAX_EXEMPLAR_CHARS - 8);
        assert!(Exemplar::new(labels(&[("trace_id", &long)]), 1.0, 0).is_ok());
        let longer = "é".repeat(MAX_EXEMPLAR_CHARS - 7);
        assert!(Exemplar::new(labels(&[("trace_id", &longer)]), 1.0, 0).is_err());
        assert!(Exemplar::new(vec![], 1.0, 0).is_err());
        assert!(Exemplar::new(labels(&[("1x", "a")]), 1.0, 0).is_err());
        assert!(Exemplar::new(labels(&[("__x", "a")]), 1.0, 0).is_err());
        assert!(Exemplar::new(labels(&[("a", "1"), ("a", "2")]), 1.0, 0).is_err());
        assert!(Exemplar::new(labels(&[("a", "1")]), f64::NAN, 0).is_err());
    }

    #[test]
    fn slots_keep_the_last_exemplar_each() {
        let slots = Exemplars::new(3);
        let ex = |v: f64| Exemplar::new(labels(&[("trace_id", "t")]), v, 7).unwrap();
        slots.set(0, ex(1.0));
        slots.set(0, ex(2.0));
        slots.set(9, ex(3.0));
        let read = slots.read();
        assert_eq!(read[0].as_ref().map(|e| e.value), Some(2.0));
        assert_eq!(read[1], None);
        assert_eq!(read[2].as_ref().map(|e| e.value), Some(3.0));
    }
}
