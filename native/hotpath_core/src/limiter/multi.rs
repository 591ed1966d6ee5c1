//! Several policies decided at once, and escalating bans.
//!
//! A limiter with several named policies (or with a ban rule) keeps one table entry per key
//! whose value is a cell: one [`Slot`] per policy, in the limiter's order, followed by
//! three slots of ban state when the limiter has a [`Ban`] rule: a [`Pair`] inline in the
//! entry for up to two slots, else a boxed slice (see [`Cells`]). The table runs every
//! operation on a cell under the key's lock (see [`super::table::Op`]), so a hit reads
//! every policy's slot, decides each one and then writes all of them or none: a request is
//! admitted only if every policy admits it, and a denial charges no policy.
//!
//! Ban state (slots `n`, `n + 1`, `n + 2` after the `n` policies):
//!
//! | slot      | `expires`                                  | `x`        |
//! |-----------|--------------------------------------------|------------|
//! | `n`       | end of the ban (`0`: none)                 | offences   |
//! | `n + 1`   | end of the window counting denials (strikes)| strikes   |
//! | `n + 2`   | when past offences are forgotten (`0`: none)| -         |
//!
//! A cell's expiry is the latest of its slots' (see [`Cell`]): the sweeper removes a
//! key only once every policy is fresh, its ban is over, its strikes are stale and its
//! offences are forgotten.

use super::algorithm::{decide, Decision, Policy, Slot, NS_PER_MS};
use super::key::KeyRef;
use super::table::{Config, Op, Stats, SweepChunk, Table, Value};
use crate::error::{Error, Result};
use std::time::Duration;

/// The most policies one limiter holds.
pub const MAX_POLICIES: usize = 8;

/// Runs `$body` with `$n`, a rules' policy count, as the constant `$N`, so that the code
/// over a cell's policies is compiled for each count (loops unrolled, slots moved as arrays).
/// `Rules::new` bounds the count to `1..=MAX_POLICIES`: the last arm is `MAX_POLICIES`.
macro_rules! with_policy_count {
    ($n:expr, $N:ident => $body:expr) => {
        match $n {
            1 => {
                const $N: usize = 1;
                $body
            }
            2 => {
                const $N: usize = 2;
                $body
            }
            3 => {
                const $N: usize = 3;
                $body
            }
            4 => {
                const $N: usize = 4;
                $body
            }
            5 => {
                const $N: usize = 5;
                $body
            }
            6 => {
                const $N: usize = 6;
                $body
            }
            7 => {
                const $N: usize = 7;
                $body
            }
            _ => {
                const $N: usize = MAX_POLICIES;
                $body
            }
        }
    };
}

/// The first `N` policies: a call's own policies come as many as the rules' (the NIF
/// checks), so this never fails.
#[inline(always)]
fn first<const N: usize>(policies: &[Policy]) -> &[Policy; N] {
    policies
        .first_chunk()
        .expect("as many policies as the rules")
}

/// Slots of ban state at the end of a cell.
const BAN_SLOTS: usize = 3;

/// Slots a [`Pair`] holds: two policies without bans, the common case, need no allocation
/// and no second memory access.
pub const INLINE_SLOTS: usize = 2;

/// What a table of several policies (or of bans) stores per key: its slots, one per policy
/// and then the ban state. Two kinds: a [`Pair`] (up to [`INLINE_SLOTS`] slots, in the table
/// entry) and a boxed slice (more slots, allocated with the key).
pub trait Cell: Value + std::ops::DerefMut<Target = [Slot]> {
    /// A fresh cell of `len` slots (at most [`INLINE_SLOTS`] for a [`Pair`]).
    fn fresh(len: usize) -> Self;
}

/// A cell of up to [`INLINE_SLOTS`] slots, inline in its table entry (a cell of one policy
/// has one unused slot, always fresh). Without an enum tag the entry is 48 bytes, where a
/// cell that could hold either kind took 56.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pair([Slot; INLINE_SLOTS]);

impl std::ops::Deref for Pair {
    type Target = [Slot];
    #[inline(always)]
    fn deref(&self) -> &[Slot] {
        &self.0
    }
}

impl std::ops::DerefMut for Pair {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [Slot] {
        &mut self.0
    }
}

impl Value for Pair {
    #[inline]
    fn expires(&self) -> u64 {
        self.0[0].expires.max(self.0[1].expires)
    }
}

impl Cell for Pair {
    fn fresh(len: usize) -> Pair {
        debug_assert!(len <= INLINE_SLOTS);
        Pair::default()
    }
}

impl Value for Box<[Slot]> {
    #[inline]
    fn expires(&self) -> u64 {
        self.iter().map(|s| s.expires).max().unwrap_or(0)
    }
}

impl Cell for Box<[Slot]> {
    fn fresh(len: usize) -> Box<[Slot]> {
        vec![Slot::default(); len].into_boxed_slice()
    }
}

/// The table of a limiter of several policies (or of bans): of [`Pair`]s when its cells fit
/// inline, else of boxed slices. Each method runs on whichever it is.
pub enum Cells {
    /// Cells of up to [`INLINE_SLOTS`] slots.
    Pair(Table<Pair>),
    /// Larger cells.
    Boxed(Table<Box<[Slot]>>),
}

/// Runs `$body` with `$t` bound to the table inside `$cells`.
macro_rules! on_table {
    ($cells:expr, $t:ident => $body:expr) => {
        match $cells {
            Cells::Pair($t) => $body,
            Cells::Boxed($t) => $body,
        }
    };
}

impl Cells {
    /// A table for `rules`, configured by `config` (its `policy` is not used: cells carry
    /// the rules' own).
    pub fn new(config: Config, rules: &Rules) -> Cells {
        match rules.value_bytes() {
            0 => Cells::Pair(Table::with_value_bytes(config, 0)),
            bytes => Cells::Boxed(Table::with_value_bytes(config, bytes)),
        }
    }

    /// A hit of every policy (see [`MultiHit`]), and the table work it did.
    #[inline]
    pub fn hit(&self, key: KeyRef<'_>, now: u64, hit: &MultiHit<'_>) -> (Outcome, usize) {
        on_table!(self, t => t.apply(key, now, hit))
    }

    /// An operator's operation (see [`Operator`]), and the table work it did.
    pub fn operate(&self, key: KeyRef<'_>, now: u64, op: &Operator<'_>) -> (bool, usize) {
        on_table!(self, t => t.apply(key, now, op))
    }

    /// Calls `f` with the stored slots of `key` (`None`: not stored), under its bucket's lock.
    pub fn read<R>(&self, key: KeyRef<'_>, f: impl FnOnce(Option<&[Slot]>) -> R) -> R {
        on_table!(self, t => t.read(key, |cell| f(cell.map(|c| &c[..]))))
    }

    /// Forgets `key`. Returns whether it was stored.
    pub fn reset(&self, key: KeyRef<'_>) -> bool {
        on_table!(self, t => t.reset(key))
    }

    /// Removes every key.
    pub fn clear(&self) {
        on_table!(self, t => t.clear())
    }

    /// See [`Table::stats`].
    pub fn stats(&self) -> Stats {
        on_table!(self, t => t.stats())
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        on_table!(self, t => t.len())
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`Table::sweep`].
    pub fn sweep(&self, from: usize, now: u64, budget: Duration) -> SweepChunk {
        on_table!(self, t => t.sweep(from, now, budget))
    }
}

/// An escalating-ban rule (fail2ban style): a key denied `after` times within `within` is
/// refused for a ban's length, whatever its quota; the `k`-th offence still remembered bans
/// for `for * backoff^(k - 1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ban {
    /// `(after, within_ns)`: the denials within that window that start a ban; `None`: bans
    /// only by [`BanOp::Ban`].
    trigger: Option<(u32, u64)>,
    for_ns: u64,
    backoff: f64,
    max_ns: u64,
}

impl Ban {
    /// Largest ban, window or cap: 100 days, in milliseconds (as a policy's period).
    pub const MAX_MS: u64 = Policy::MAX_PERIOD_MS;
    /// Largest `backoff` factor.
    pub const MAX_BACKOFF: f64 = 1000.0;

    /// Builds a rule: `after` denials within `within_ms` (both or neither) ban for `for_ms`,
    /// each remembered offence multiplying the length by `backoff` (at least 1), up to
    /// `max_ms` (at least `for_ms`; `None`: `for_ms * 64`, at most 100 days).
    pub fn new(
        after: Option<u64>,
        within_ms: Option<u64>,
        for_ms: u64,
        backoff: f64,
        max_ms: Option<u64>,
    ) -> Result<Ban> {
        let ms_in_range = |what: &str, ms: u64| {
            if ms == 0 || ms > Self::MAX_MS {
                Err(Error::invalid(format!(
                    "ban {what} must be an integer number of milliseconds in 1..{} (100 days), got {ms}",
                    Self::MAX_MS
                )))
            } else {
                Ok(ms)
            }
        };
        let trigger = match (after, within_ms) {
            (None, None) => None,
            (Some(after), Some(within)) => {
                if after == 0 || after > u64::from(u32::MAX) {
                    return Err(Error::invalid(format!(
                        "ban after must be an integer in 1..{}, got {after}",
                        u32::MAX
                    )));
                }
                Some((after as u32, ms_in_range("within", within)? * NS_PER_MS))
            }
            _ => {
                return Err(Error::invalid(
                    "ban after and within go together: give both or neither",
                ))
            }
        };
        let for_ms = ms_in_range("for", for_ms)?;
        if !(backoff.is_finite() && (1.0..=Self::MAX_BACKOFF).contains(&backoff)) {
            return Err(Error::invalid(format!(
                "ban backoff must be a number in 1..{}, got {backoff}",
                Self::MAX_BACKOFF
            )));
        }
        let max_ms = match max_ms {
            None => (for_ms.saturating_mul(64)).min(Self::MAX_MS),
            Some(max) => {
                let max = ms_in_range("max", max)?;
                if max < for_ms {
                    return Err(Error::invalid(format!(
                        "ban max must be at least for ({for_ms} ms), got {max}"
                    )));
                }
                max
            }
        };
        Ok(Ban {
            trigger,
            for_ns: for_ms * NS_PER_MS,
            backoff,
            max_ns: max_ms * NS_PER_MS,
        })
    }

    /// The length of a ban for a key with `offences` earlier offences still remembered.
    pub fn length(&self, offences: u32) -> u64 {
        let length = (self.for_ns as f64) * self.backoff.powi(offences.min(4096) as i32);
        if length >= self.max_ns as f64 {
            self.max_ns
        } else {
            (length as u64).max(1)
        }
    }

    /// How long offences are remembered after a ban ends: `max` when bans lengthen, else 0.
    fn memory(&self) -> u64 {
        if self.backoff > 1.0 {
            self.max_ns
        } else {
            0
        }
    }

    /// The denials within the window that start a ban, and the window (ns).
    pub fn trigger(&self) -> Option<(u32, u64)> {
        self.trigger
    }
}

/// The ban state of one key, as read from its cell at `now` (stale parts zeroed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BanState {
    /// End of the ban; in the past (or 0) when the key is not banned.
    pub until: u64,
    /// Offences still remembered.
    pub offences: u32,
    /// Denials counted in the current window.
    pub strikes: u32,
    /// End of the current window of denials (0 with no strikes).
    pub strikes_end: u64,
    /// When the offences are forgotten (0: none to forget).
    pub forget_at: u64,
}

impl BanState {
    fn read(slots: &[Slot], now: u64) -> BanState {
        let (ban, strikes, forget) = (slots[0], slots[1], slots[2]);
        let remembered = forget.expires > now || ban.expires > now;
        let counting = strikes.expires > now;
        BanState {
            until: ban.expires,
            offences: if remembered { ban.x } else { 0 },
            strikes: if counting { strikes.x } else { 0 },
            strikes_end: if counting { strikes.expires } else { 0 },
            forget_at: if remembered { forget.expires } else { 0 },
        }
    }

    fn write(&self, slots: &mut [Slot]) {
        slots[0] = Slot {
            expires: self.until,
            x: self.offences,
            y: 0,
        };
        slots[1] = Slot {
            expires: if self.strikes > 0 {
                self.strikes_end
            } else {
                0
            },
            x: self.strikes,
            y: 0,
        };
        slots[2] = Slot {
            expires: self.forget_at,
            x: 0,
            y: 0,
        };
    }

    /// True while the key is banned.
    pub fn banned(&self, now: u64) -> bool {
        self.until > now
    }
}

/// The policies of a limiter and its ban rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    policies: Vec<Policy>,
    ban: Option<Ban>,
}

/// How a multi-policy decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every policy admitted the request; each was charged.
    Allowed,
    /// At least one policy refused it; none was charged.
    Denied,
    /// The key is banned: refused whatever its quota, for `left` more nanoseconds.
    Banned {
        /// Time until the ban ends.
        left: u64,
    },
    /// This denial started a ban of `length` (the key's `offences`-th remembered offence).
    BanStarted {
        /// The ban's length.
        length: u64,
        /// Offences remembered, this one included.
        offences: u32,
    },
    /// A full table could not store the new key (`on_full: :deny`).
    Full {
        /// Time until a stored key may expire.
        wait: u64,
    },
}

/// The answer to a multi-policy hit or peek, summarised as the answer needs it (a few words,
/// so it is cheap to return): the verdict, the policy closest to exhaustion with its decision,
/// and the policies that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// How the decision ended.
    pub verdict: Verdict,
    /// Allowed: the policy with the fewest requests left (ties: the longest reset) and its
    /// decision. Otherwise the first policy that refused, and its decision.
    pub tightest: (usize, Decision),
    /// Bit `i` set: policy `i` refused the request.
    pub violated: u8,
    /// The largest wait among the refusing policies (`None`: one of them can never admit the
    /// request), and the largest time to their reset.
    pub retry_after: Option<u64>,
    /// The largest time to reset among the refusing policies.
    pub reset_after: u64,
}

impl Outcome {
    /// True when the request was admitted.
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }

    /// The indices of the policies that refused, in order.
    pub fn violated(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_POLICIES).filter(|i| self.violated & (1 << i) != 0)
    }
}

/// What an evaluation writes back to the cell: nothing, the policies' new slots (in the
/// caller's buffer), or the ban state.
enum Commit {
    Nothing,
    /// The charged slots, whose latest expiry is `expires`.
    Charge {
        expires: u64,
    },
    Ban(BanState),
}

impl Rules {
    /// Between 1 and [`MAX_POLICIES`] policies, and an optional ban rule.
    pub fn new(policies: Vec<Policy>, ban: Option<Ban>) -> Result<Rules> {
        if policies.is_empty() || policies.len() > MAX_POLICIES {
            return Err(Error::invalid(format!(
                "a limiter has between 1 and {MAX_POLICIES} policies, got {}",
                policies.len()
            )));
        }
        Ok(Rules { policies, ban })
    }

    /// The policies, in order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The ban rule.
    pub fn ban(&self) -> Option<&Ban> {
        self.ban.as_ref()
    }

    /// Slots per cell.
    pub fn cell_len(&self) -> usize {
        self.policies.len() + if self.ban.is_some() { BAN_SLOTS } else { 0 }
    }

    /// Bytes a cell holds outside its table entry (none when its slots are inline).
    pub fn value_bytes(&self) -> usize {
        match self.cell_len() {
            len if len <= INLINE_SLOTS => 0,
            len => len * std::mem::size_of::<Slot>(),
        }
    }

    /// The ban state of a stored cell at `now` (default without a ban rule or a cell).
    #[inline]
    pub fn ban_state(&self, cell: Option<&[Slot]>, now: u64) -> BanState {
        match (cell, self.ban) {
            (Some(cell), Some(_)) => BanState::read(&cell[self.policies.len()..], now),
            _ => BanState::default(),
        }
    }

    /// Decides a request of `cost` at `now` against a stored cell (`None`: the key is not
    /// stored), with `policies` (the rules' own, or per-call ones of the same count).
    ///
    /// `N` is the number of policies (see [`with_policy_count!`]): with it a constant, the
    /// loop below unrolls and the slots move as fixed-size arrays.
    #[inline(always)]
    fn evaluate<const N: usize>(
        &self,
        cell: Option<&[Slot]>,
        now: u64,
        cost: u64,
        policies: &[Policy; N],
        charged: &mut [Slot; N],
    ) -> (Outcome, Commit) {
        // The cell's policy slots, read once (a cell holds at least `N` slots).
        let slots = cell.map(|c| &c[..N]);
        // Kept in locals and written to the outcome once: the loop runs on every hit.
        let mut tightest = (0, Decision::Never { reset_after: 0 });
        let (mut least, mut longest) = (u64::MAX, 0);
        let mut violated = 0u8;
        let (mut retry_after, mut reset_after_max) = (Some(0), 0);
        let mut expires = 0;
        for i in 0..N {
            let (decision, stored) = decide(&policies[i], slots.map(|s| s[i]), now, cost);
            match (decision, stored) {
                (
                    Decision::Allow {
                        remaining,
                        reset_after,
                    },
                    Some(stored),
                ) => {
                    if violated == 0
                        && (remaining < least || (remaining == least && reset_after > longest))
                    {
                        (least, longest) = (remaining, reset_after);
                        tightest = (i, decision);
                    }
                    charged[i] = stored;
                    expires = expires.max(stored.expires);
                    continue;
                }
                (
                    Decision::Deny {
                        retry_after: wait,
                        reset_after,
                    },
                    _,
                ) => {
                    retry_after = retry_after.map(|r: u64| r.max(wait));
                    reset_after_max = reset_after_max.max(reset_after);
                }
                (Decision::Never { reset_after }, _) => {
                    retry_after = None;
                    reset_after_max = reset_after_max.max(reset_after);
                }
                // Never: an admission always comes with its new slot. Were one to come
                // without, it would count as a refusal (nothing to charge).
                (Decision::Allow { .. }, None) => {}
            }
            if violated == 0 {
                tightest = (i, decision);
            }
            violated |= 1 << i;
        }
        let mut outcome = Outcome {
            verdict: if violated == 0 {
                Verdict::Allowed
            } else {
                Verdict::Denied
            },
            tightest,
            violated,
            retry_after,
            reset_after: reset_after_max,
        };
        let state = self.ban_state(cell, now);
        if state.banned(now) {
            outcome.verdict = Verdict::Banned {
                left: state.until - now,
            };
            return (outcome, Commit::Nothing);
        }
        if outcome.verdict == Verdict::Allowed {
            return (outcome, Commit::Charge { expires });
        }
        let Some((ban, (after, within))) = self.ban.and_then(|b| b.trigger.map(|t| (b, t))) else {
            return (outcome, Commit::Nothing);
        };
        let mut state = state;
        if state.strikes == 0 {
            state.strikes_end = now + within;
        }
        state.strikes += 1;
        if state.strikes >= after {
            let length = ban.length(state.offences);
            state.offences = state.offences.saturating_add(1);
            state.until = now + length;
            state.forget_at = match ban.memory() {
                0 => 0,
                memory => state.until + memory,
            };
            state.strikes = 0;
            state.strikes_end = 0;
            outcome.verdict = Verdict::BanStarted {
                length,
                offences: state.offences,
            };
        }
        (outcome, Commit::Ban(state))
    }

    /// What policy `index` alone answers for a request of `cost` at `now` (a banned key is
    /// refused for the ban's time), charging nothing.
    pub fn peek_policy(
        &self,
        cell: Option<&[Slot]>,
        now: u64,
        cost: u64,
        index: usize,
        policies: Option<&[Policy]>,
    ) -> Decision {
        let state = self.ban_state(cell, now);
        if state.banned(now) {
            let left = state.until - now;
            return Decision::Deny {
                retry_after: left,
                reset_after: left,
            };
        }
        let policy = policies.unwrap_or(&self.policies)[index];
        decide(&policy, cell.map(|c| c[index]), now, cost).0
    }

    /// The decision of a hit, without charging anything.
    pub fn peek(
        &self,
        cell: Option<&[Slot]>,
        now: u64,
        cost: u64,
        policies: Option<&[Policy]>,
    ) -> Outcome {
        let policies = policies.unwrap_or(&self.policies);
        let (mut outcome, _) = with_policy_count!(self.policies.len(), N => {
            let mut charged = [Slot::default(); N];
            self.evaluate::<N>(cell, now, cost, first::<N>(policies), &mut charged)
        });
        // A peek starts no ban: it reports the denial that would count.
        if let Verdict::BanStarted { .. } = outcome.verdict {
            outcome.verdict = Verdict::Denied;
        }
        outcome
    }

    #[inline(always)]
    fn commit<const N: usize>(&self, cell: &mut [Slot], commit: Commit, charged: &[Slot; N]) {
        match commit {
            Commit::Nothing => {}
            Commit::Charge { .. } => cell[..N].copy_from_slice(charged),
            Commit::Ban(state) => state.write(&mut cell[self.policies.len()..]),
        }
    }
}

/// A hit of every policy at once: the operation of a limiter with a [`Cells`] table.
pub struct MultiHit<'r> {
    /// The limiter's rules.
    pub rules: &'r Rules,
    /// Per-call policies (as many as the rules'), or `None` for the rules' own.
    pub policies: Option<&'r [Policy]>,
    /// The request's cost.
    pub cost: u64,
}

impl MultiHit<'_> {
    #[inline(always)]
    fn stored_n<const N: usize, C: Cell>(&self, cell: &mut C, now: u64) -> (Outcome, Option<u64>) {
        let policies = first::<N>(self.policies.unwrap_or(&self.rules.policies));
        let mut charged = [Slot::default(); N];
        let (outcome, commit) =
            self.rules
                .evaluate::<N>(Some(&cell[..]), now, self.cost, policies, &mut charged);
        match commit {
            Commit::Nothing => (outcome, None),
            // The charged slots' latest expiry is at most the cell's: a lower bound is all
            // the table's hint needs.
            Commit::Charge { expires } => {
                self.rules.commit(cell, commit, &charged);
                (outcome, Some(expires))
            }
            commit => {
                self.rules.commit(cell, commit, &charged);
                (outcome, Some(cell.expires()))
            }
        }
    }

    #[inline(always)]
    fn fresh_n<const N: usize, C: Cell>(&self, now: u64) -> (Outcome, Option<C>) {
        let policies = first::<N>(self.policies.unwrap_or(&self.rules.policies));
        let mut charged = [Slot::default(); N];
        let (outcome, commit) =
            self.rules
                .evaluate::<N>(None, now, self.cost, policies, &mut charged);
        match commit {
            Commit::Nothing => (outcome, None),
            commit => {
                let mut cell = C::fresh(self.rules.cell_len());
                self.rules.commit(&mut cell, commit, &charged);
                (outcome, Some(cell))
            }
        }
    }
}

impl<C: Cell> Op<C> for MultiHit<'_> {
    type Out = Outcome;

    #[inline(always)]
    fn stored(&self, cell: &mut C, now: u64) -> (Outcome, Option<u64>) {
        with_policy_count!(self.rules.policies.len(), N => self.stored_n::<N, C>(cell, now))
    }

    #[inline]
    fn fresh(&self, now: u64) -> (Outcome, Option<C>) {
        with_policy_count!(self.rules.policies.len(), N => self.fresh_n::<N, C>(now))
    }

    fn full(&self, mut fresh: Outcome, wait: Option<u64>) -> Outcome {
        fresh.verdict = match (fresh.verdict, wait) {
            // Admitted untracked (`on_full: :allow`).
            (Verdict::Allowed, None) => Verdict::Allowed,
            (Verdict::Allowed, Some(wait)) => Verdict::Full { wait },
            // A denial whose strike could not be stored stays a plain denial.
            _ => Verdict::Denied,
        };
        fresh
    }
}

/// An operator's operation on one key of a [`Cells`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanOp {
    /// Bans the key for this many nanoseconds from now (replacing a ban in force); its
    /// offences and strikes are kept.
    Ban(u64),
    /// Lifts the key's ban and forgets its strikes and offences.
    Unban,
    /// Forgets the state of policy `i` (the key's other policies and its ban stay).
    ResetPolicy(usize),
}

/// A [`BanOp`] with the rules it applies to; its answer is whether anything was stored
/// (`false` for a ban a full table had no room for, or an unban of a key not banned).
pub struct Operator<'r> {
    /// The limiter's rules.
    pub rules: &'r Rules,
    /// The operation.
    pub op: BanOp,
}

impl Operator<'_> {
    fn apply(&self, cell: &mut [Slot], now: u64) -> bool {
        let n = self.rules.policies.len();
        match self.op {
            BanOp::Ban(length) => {
                let mut state = self.rules.ban_state(Some(cell), now);
                state.until = now + length.max(1);
                if state.offences > 0 || self.rules.ban.is_some_and(|b| b.memory() > 0) {
                    state.forget_at = state.forget_at.max(state.until);
                }
                state.write(&mut cell[n..]);
                true
            }
            BanOp::Unban => {
                let was = self.rules.ban_state(Some(cell), now);
                BanState::default().write(&mut cell[n..]);
                was != BanState::default()
            }
            BanOp::ResetPolicy(i) => {
                cell[i] = Slot::default();
                true
            }
        }
    }
}

impl<C: Cell> Op<C> for Operator<'_> {
    type Out = bool;

    fn stored(&self, cell: &mut C, now: u64) -> (bool, Option<u64>) {
        let changed = self.apply(cell, now);
        (changed, Some(cell.expires()))
    }

    fn fresh(&self, now: u64) -> (bool, Option<C>) {
        match self.op {
            BanOp::Ban(_) => {
                let mut cell = C::fresh(self.rules.cell_len());
                self.apply(&mut cell, now);
                (true, Some(cell))
            }
            BanOp::Unban | BanOp::ResetPolicy(_) => (false, None),
        }
    }

    fn full(&self, _fresh: bool, _wait: Option<u64>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::algorithm::Algorithm;
    use super::super::key::{ByteKind, KeyRef};
    use super::super::table::{Config, OnFull};
    use super::*;
    use std::sync::Arc;

    const MS: u64 = NS_PER_MS;

    fn p(algorithm: Algorithm, limit: u64, period_ms: u64) -> Policy {
        Policy::new(algorithm, limit, period_ms, None).unwrap()
    }

    fn table(rules: &Rules, max_keys: usize) -> Cells {
        Cells::new(
            Config {
                policy: rules.policies()[0],
                max_keys,
                max_bytes: usize::MAX,
                on_full: OnFull::Deny,
            },
            rules,
        )
    }

    fn key(s: &str) -> KeyRef<'_> {
        KeyRef::Bytes(ByteKind::Binary, s.as_bytes())
    }

    fn hit(t: &Cells, rules: &Rules, k: &str, now_ms: u64, cost: u64) -> Outcome {
        t.hit(
            key(k),
            now_ms * MS,
            &MultiHit {
                rules,
                policies: None,
                cost,
            },
        )
        .0
    }

    #[test]
    fn every_policy_count_decides_all_or_nothing() {
        // Each count is compiled on its own (`with_policy_count!`): policy `i` admits `i + 2`
        // per day, so the first refuses the third hit and the others are charged twice.
        for n in 1..=MAX_POLICIES {
            let policies = (0..n)
                .map(|i| p(Algorithm::FixedWindow, i as u64 + 2, 86_400_000))
                .collect();
            let rules = Rules::new(policies, None).unwrap();
            let t = table(&rules, 10);
            assert!(hit(&t, &rules, "k", 0, 1).allowed());
            let o = hit(&t, &rules, "k", 0, 1);
            assert!(o.allowed());
            assert_eq!(o.tightest.0, 0, "{n} policies");
            let o = hit(&t, &rules, "k", 0, 1);
            assert_eq!(o.violated().collect::<Vec<_>>(), vec![0], "{n} policies");
            let used: Vec<u32> = t.read(key("k"), |cell| {
                cell.unwrap()[..n].iter().map(|s| s.x).collect()
            });
            assert_eq!(used, vec![2; n], "{n} policies");
            let peeked = t.read(key("k"), |cell| rules.peek(cell, 0, 1, None));
            assert_eq!(peeked.violated, 1, "{n} policies");
        }
    }

    #[test]
    fn all_or_nothing() {
        // burst: 3 per second; daily: 5 per day.
        let rules = Rules::new(
            vec![
                p(Algorithm::FixedWindow, 3, 1000),
                p(Algorithm::FixedWindow, 5, 86_400_000),
            ],
            None,
        )
        .unwrap();
        let t = table(&rules, 100);
        for _ in 0..3 {
            assert!(hit(&t, &rules, "a", 0, 1).allowed());
        }
        // The burst policy refuses: the daily one is not charged.
        let o = hit(&t, &rules, "a", 0, 1);
        assert_eq!(o.verdict, Verdict::Denied);
        assert_eq!(o.violated().collect::<Vec<_>>(), vec![0]);
        assert_eq!(o.retry_after, Some(1000 * MS));
        for _ in 0..10 {
            hit(&t, &rules, "a", 10, 1);
        }
        // Next second: 2 more fit the day (3 + 2 = 5), then the daily policy refuses.
        assert!(hit(&t, &rules, "a", 1000, 1).allowed());
        assert!(hit(&t, &rules, "a", 1000, 1).allowed());
        let o = hit(&t, &rules, "a", 1000, 1);
        assert_eq!(o.verdict, Verdict::Denied);
        assert_eq!(o.violated().collect::<Vec<_>>(), vec![1]);
        assert_eq!(o.tightest.0, 1);
        // Both refuse a cost of 5: the largest wait; a cost beyond every capacity: never.
        let o = hit(&t, &rules, "a", 1000, 5);
        assert_eq!(o.violated().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(o.retry_after, None);
        let o = hit(&t, &rules, "a", 1000, 3);
        assert_eq!(o.violated().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(o.retry_after, Some(86_399_000 * MS));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn concurrent_hits_admit_exactly_the_tightest_total() {
        for a in Algorithm::ALL {
            for b in Algorithm::ALL {
                let rules = Arc::new(
                    Rules::new(vec![p(a, 700, 3_600_000), p(b, 1000, 3_600_000)], None).unwrap(),
                );
                let t = Arc::new(table(&rules, 100));
                let threads: Vec<_> = (0..8)
                    .map(|_| {
                        let (t, rules) = (Arc::clone(&t), Arc::clone(&rules));
                        std::thread::spawn(move || {
                            (0..200)
                                .filter(|_| hit(&t, &rules, "hot", 0, 1).allowed())
                                .count()
                        })
                    })
                    .collect();
                let admitted: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
                assert_eq!(admitted, 700, "{a:?} + {b:?}");
                // The looser policy was charged exactly the admitted requests.
                let o = t.read(key("hot"), |c| rules.peek_policy(c, 0, 1, 1, None));
                match o {
                    Decision::Allow { remaining, .. } => assert_eq!(remaining, 299, "{a:?}+{b:?}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn bans_start_after_denials_and_end_on_time() {
        let ban = Ban::new(Some(3), Some(60_000), 10_000, 2.0, Some(25_000)).unwrap();
        let rules = Rules::new(vec![p(Algorithm::FixedWindow, 1, 1000)], Some(ban)).unwrap();
        let t = table(&rules, 100);
        assert!(hit(&t, &rules, "k", 0, 1).allowed());
        assert_eq!(hit(&t, &rules, "k", 1, 1).verdict, Verdict::Denied);
        assert_eq!(hit(&t, &rules, "k", 2, 1).verdict, Verdict::Denied);
        assert_eq!(
            hit(&t, &rules, "k", 3, 1).verdict,
            Verdict::BanStarted {
                length: 10_000 * MS,
                offences: 1
            }
        );
        // Banned whatever the quota (the window reopened at 1000 ms).
        assert_eq!(
            hit(&t, &rules, "k", 5_003, 1).verdict,
            Verdict::Banned { left: 5_000 * MS }
        );
        assert!(hit(&t, &rules, "k", 10_003, 1).allowed());
        // A second offence doubles the ban; a third is capped at 25 s.
        for at in [10_004, 10_005] {
            assert_eq!(hit(&t, &rules, "k", at, 1).verdict, Verdict::Denied);
        }
        assert_eq!(
            hit(&t, &rules, "k", 10_006, 1).verdict,
            Verdict::BanStarted {
                length: 20_000 * MS,
                offences: 2
            }
        );
        let later = 30_006;
        assert!(hit(&t, &rules, "k", later, 1).allowed());
        for at in [later + 1, later + 2] {
            assert_eq!(hit(&t, &rules, "k", at, 1).verdict, Verdict::Denied);
        }
        assert_eq!(
            hit(&t, &rules, "k", later + 3, 1).verdict,
            Verdict::BanStarted {
                length: 25_000 * MS,
                offences: 3
            }
        );
        // Strikes older than `within` do not count.
        let t2 = table(&rules, 100);
        assert!(hit(&t2, &rules, "k", 0, 1).allowed());
        assert_eq!(hit(&t2, &rules, "k", 1, 1).verdict, Verdict::Denied);
        assert_eq!(hit(&t2, &rules, "k", 2, 1).verdict, Verdict::Denied);
        assert!(hit(&t2, &rules, "k", 60_001, 1).allowed());
        assert_eq!(hit(&t2, &rules, "k", 60_002, 1).verdict, Verdict::Denied);
        // Once everything is over and forgotten, the sweeper removes the key.
        let end = (60_002 + 60_000 + 1) * MS;
        t2.sweep(0, end, std::time::Duration::from_secs(1));
        assert_eq!(t2.len(), 0);
        // Offences are forgotten `max` after the ban ends.
        let after_all = (later + 3 + 25_000 + 25_000) * MS;
        t.sweep(0, after_all, std::time::Duration::from_secs(1));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn operators_ban_unban_and_reset_one_policy() {
        let ban = Ban::new(None, None, 1000, 1.0, None).unwrap();
        let rules = Rules::new(
            vec![
                p(Algorithm::Gcra, 2, 1000),
                p(Algorithm::SlidingWindow, 10, 1000),
            ],
            Some(ban),
        )
        .unwrap();
        let t = table(&rules, 100);
        let op = |op| Operator { rules: &rules, op };
        assert!(t.operate(key("k"), 0, &op(BanOp::Ban(5000 * MS))).0);
        assert_eq!(
            hit(&t, &rules, "k", 1000, 1).verdict,
            Verdict::Banned { left: 4000 * MS }
        );
        assert!(t.operate(key("k"), 1000 * MS, &op(BanOp::Unban)).0);
        assert!(!t.operate(key("k"), 1000 * MS, &op(BanOp::Unban)).0);
        assert!(hit(&t, &rules, "k", 1000, 2).allowed());
        assert_eq!(hit(&t, &rules, "k", 1000, 1).verdict, Verdict::Denied);
        assert!(t.operate(key("k"), 1000 * MS, &op(BanOp::ResetPolicy(0))).0);
        let o = hit(&t, &rules, "k", 1000, 1);
        assert!(o.allowed());
        // The second policy kept its count: 2 + 1 of 10.
        assert_eq!(
            t.read(key("k"), |c| rules.peek_policy(c, 1000 * MS, 0, 1, None)),
            Decision::Allow {
                remaining: 7,
                reset_after: 2000 * MS
            }
        );
        // No automatic bans without a trigger.
        for _ in 0..20 {
            hit(&t, &rules, "k", 1000, 1);
        }
        assert!(!t
            .read(key("k"), |cell| rules.ban_state(cell, 1000 * MS))
            .banned(1000 * MS));
        // A ban is stored for a key never seen.
        assert!(t.operate(key("new"), 0, &op(BanOp::Ban(MS))).0);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn rule_validation() {
        let err = |r: Result<Ban>| r.unwrap_err().to_string();
        assert!(err(Ban::new(Some(1), None, 1, 1.0, None)).contains("go together"));
        assert!(err(Ban::new(Some(0), Some(1), 1, 1.0, None)).contains("after"));
        assert!(err(Ban::new(None, None, 0, 1.0, None)).contains("for"));
        assert!(err(Ban::new(None, None, 10, 0.5, None)).contains("backoff"));
        assert!(err(Ban::new(None, None, 10, f64::NAN, None)).contains("backoff"));
        assert!(err(Ban::new(None, None, 10, 2.0, Some(5))).contains("at least for"));
        assert!(Rules::new(vec![], None).is_err());
        assert!(Rules::new(vec![p(Algorithm::Gcra, 1, 1); 9], None).is_err());
        let b = Ban::new(None, None, 1000, 3.0, None).unwrap();
        assert_eq!(b.length(0), 1000 * MS);
        assert_eq!(b.length(2), 9000 * MS);
        assert_eq!(b.length(100), 64_000 * MS);
    }

    #[test]
    fn a_full_table_denies_new_keys_and_records_no_strike() {
        let ban = Ban::new(Some(1), Some(1000), 1000, 1.0, None).unwrap();
        let rules = Rules::new(vec![p(Algorithm::Gcra, 1, 1000)], Some(ban)).unwrap();
        let t = table(&rules, 16);
        for i in 0..16 {
            assert!(hit(&t, &rules, &format!("k{i}"), 0, 1).allowed());
        }
        let o = hit(&t, &rules, "other", 0, 1);
        assert!(matches!(o.verdict, Verdict::Full { .. }));
        // Cost over capacity for a new key: a denial, no strike stored.
        assert_eq!(hit(&t, &rules, "other", 0, 5).verdict, Verdict::Denied);
        assert_eq!(t.len(), 16);
        assert!(t.stats().memory_bytes > 16 * 32);
        // One policy and a ban: boxed; two policies: inline.
        assert!(matches!(t, Cells::Boxed(_)));
        assert_eq!(t.read(key("k0"), |c| c.map(<[Slot]>::len)), Some(4));
        let two = Rules::new(vec![p(Algorithm::Gcra, 1, 1000); 2], None).unwrap();
        assert_eq!(two.value_bytes(), 0);
        let t = table(&two, 16);
        assert!(hit(&t, &two, "k", 0, 1).allowed());
        assert!(matches!(t, Cells::Pair(_)));
        assert_eq!(t.read(key("k"), |c| c.map(<[Slot]>::len)), Some(2));
    }
}
