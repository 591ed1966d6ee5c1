//! NIFs of `Hotpath.RateLimiter`: a resource owning a `hotpath_core` limiter table and its
//! monotonic clock.
//!
//! Every NIF here but `limiter_new` and `limiter_clear` (dirty CPU: proportional to the
//! table's shard count or size) runs on a normal scheduler and is bounded: a hit is one bucket
//! lock and a few arithmetic operations; keys are limited to [`MAX_KEY_BYTES`], refused after a
//! walk bounded by that size; `limiter_stats` reads counters; a sweep chunk stops when its time
//! budget (capped below 1 ms) is spent. The slower paths (a key encoded or refused by its
//! walk, a full table making room) report their time with `consume_timeslice`, so a process
//! calling them in a loop is preempted like any other.

use crate::error::{argument_error, guard, lift, NifResult};
use crate::fast_nif::fast_nif;
use crate::published::Published;
use hotpath_core::clock;
use hotpath_core::limiter::multi::MAX_POLICIES;
use hotpath_core::limiter::{
    Algorithm, Ban, BanOp, ByteKind, Cells, Config, Decision, KeyRef, MultiHit, OnFull, Operator,
    Outcome, Policy, Rules, Slot, Stats, SweepChunk, Table, Verdict, NS_PER_MS,
};
use rustler::types::binary::{Binary, OwnedBinary};
use rustler::{Atom, Encoder, Env, NifMap, Resource, ResourceArc, Term, TermType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod atoms {
    rustler::atoms! {
        allow, deny, infinity, nil, hit, peek, report, unpublished,
        gcra, token_bucket, fixed_window, sliding_window,
        ban, unban, banned, reset, full,
        measured_key = "$hotpath_measured_key",
    }
}

/// Keys larger than this (as a binary, or encoded with `term_to_binary/1`) are refused:
/// hashing them would cost more than a hit should.
pub const MAX_KEY_BYTES: usize = 4096;

/// The largest injected `now`, in milliseconds (about 34 years).
const MAX_NOW_MS: u64 = 1 << 40;

/// The largest `max_bytes` option (256 TiB: beyond any machine, and no overflow on 64 bits).
const MAX_BYTES_OPTION: u64 = 1 << 48;

/// Sweep chunks never hold a normal scheduler longer than this.
const MAX_SWEEP_BUDGET_US: u64 = 900;

/// The table of a limiter: slots for one policy (the plain, fastest case), or cells for
/// several named policies and bans.
pub enum Tables {
    /// One policy, no bans.
    Single(Table<Slot>),
    /// Several policies, or one with a ban rule.
    Multi(Multi),
}

/// A limiter of several policies, or of one policy with bans.
pub struct Multi {
    table: Cells,
    rules: Rules,
    /// The policies' names, in order (the atoms the answers carry), and whether answers are
    /// the plain 3-tuples of a single-policy limiter (one policy with bans).
    shape: Shape,
}

impl Tables {
    fn reset(&self, key: KeyRef<'_>) -> bool {
        match self {
            Tables::Single(t) => t.reset(key),
            Tables::Multi(m) => m.table.reset(key),
        }
    }
    fn clear(&self) {
        match self {
            Tables::Single(t) => t.clear(),
            Tables::Multi(m) => m.table.clear(),
        }
    }
    fn stats(&self) -> Stats {
        match self {
            Tables::Single(t) => t.stats(),
            Tables::Multi(m) => m.table.stats(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Tables::Single(t) => t.len(),
            Tables::Multi(m) => m.table.len(),
        }
    }
    fn sweep(&self, from: usize, now: u64, budget: Duration) -> SweepChunk {
        match self {
            Tables::Single(t) => t.sweep(from, now, budget),
            Tables::Multi(m) => m.table.sweep(from, now, budget),
        }
    }
}

/// A limiter table and the epoch of its clock.
pub struct Limiter {
    table: Tables,
    /// `clock::now_ns()` when the table was created: the zero of the limiter's clock.
    epoch_ns: u64,
    /// Whether `limiter_hit` marks denials for a telemetry event (set at each publish).
    report_denies: AtomicBool,
}

impl Limiter {
    /// Nanoseconds since the table was created, from `hotpath_core::clock` (monotonic).
    pub(crate) fn now_ns(&self) -> u64 {
        clock::now_ns().saturating_sub(self.epoch_ns)
    }
}

/// The resource term of a limiter (kept in `:persistent_term` by its owner); the same
/// `Limiter` is published under its name for the hot path.
pub struct LimiterResource(Arc<Limiter>);

#[rustler::resource_impl]
impl Resource for LimiterResource {}

impl std::ops::Deref for LimiterResource {
    type Target = Limiter;
    fn deref(&self) -> &Limiter {
        &self.0
    }
}

static PUBLISHED: Published<Limiter> = Published::new();

fn algorithm_of(atom: Atom) -> NifResult<Algorithm> {
    let pairs = [
        (atoms::gcra(), Algorithm::Gcra),
        (atoms::token_bucket(), Algorithm::TokenBucket),
        (atoms::fixed_window(), Algorithm::FixedWindow),
        (atoms::sliding_window(), Algorithm::SlidingWindow),
    ];
    pairs
        .into_iter()
        .find(|(a, _)| *a == atom)
        .map(|(_, alg)| alg)
        .ok_or_else(|| {
            argument_error(
                "algorithm must be one of :gcra, :token_bucket, :fixed_window, :sliding_window",
            )
        })
}

#[inline(always)]
fn positive(term: Term, what: &str) -> NifResult<u64> {
    match term.decode::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(not_positive(term, what)),
    }
}

#[cold]
fn not_positive(term: Term, what: &str) -> rustler::Error {
    argument_error(format!(
        "{what} must be a positive integer, got: {}",
        describe(term)
    ))
}

fn optional_positive(term: Term, what: &str) -> NifResult<Option<u64>> {
    if is_nil(term) {
        Ok(None)
    } else {
        positive(term, what).map(Some)
    }
}

fn is_nil(term: Term) -> bool {
    term.decode::<Atom>().is_ok_and(|a| a == atoms::nil())
}

/// A short description of a bad term for error messages (never its full contents).
fn describe(term: Term) -> String {
    match term.get_type() {
        TermType::Integer => match term.decode::<i64>() {
            Ok(i) => i.to_string(),
            Err(_) => "an integer out of range".to_string(),
        },
        TermType::Float => "a float".to_string(),
        TermType::Atom => "an atom".to_string(),
        TermType::Binary => "a binary".to_string(),
        TermType::List => "a list".to_string(),
        TermType::Map => "a map".to_string(),
        TermType::Tuple => "a tuple".to_string(),
        _ => "a term of another type".to_string(),
    }
}

/// Borrowed key bytes, or bytes encoded for this call.
enum KeyBuf<'a> {
    Direct(KeyRef<'a>),
    Encoded(OwnedBinary),
}

impl KeyBuf<'_> {
    fn as_key(&self) -> KeyRef<'_> {
        match self {
            KeyBuf::Direct(k) => *k,
            KeyBuf::Encoded(bin) => KeyRef::Bytes(ByteKind::Term, bin.as_slice()),
        }
    }
}

/// Tells the scheduler that this call has used the time since `started` (1% of a time slice
/// per 10 µs, at least 1%).
fn charge_since(env: Env, started: Instant) {
    let percent = (started.elapsed().as_micros() / 10).clamp(1, 100) as i32;
    rustler::schedule::consume_timeslice(env, percent);
}

/// Tells the scheduler about `work` units of table work (slots or shards visited to make room
/// in a full table, a few nanoseconds each): 1% of a time slice per 2,000 units.
fn charge_work(env: Env, work: usize) {
    if work > 0 {
        let percent = work.div_ceil(2_000).clamp(1, 100) as i32;
        rustler::schedule::consume_timeslice(env, percent);
    }
}

/// The NIFs off the hot path (validation, stats, the clock) take well under a
/// microsecond but count as one reduction: they report 1% of a time slice each, so a process
/// calling them in a loop is preempted every hundred calls.
fn charge_minimum(env: Env) {
    rustler::schedule::consume_timeslice(env, 1);
}

/// Decodes a key: binaries, small integers and atoms directly; any other term through its
/// external format (`=:=`-equal terms encode alike, except `0.0` and `-0.0`).
#[inline(always)]
fn decode_key(term: Term<'_>) -> NifResult<KeyBuf<'_>> {
    // Most keys are binaries: try that first, one call for the common case.
    let key = if let Ok(binary) = Binary::from_term(term) {
        KeyRef::Bytes(ByteKind::Binary, binary.as_slice())
    } else if let Ok(int) = term.decode::<i64>() {
        KeyRef::Int(int)
    } else if term.is_atom() {
        KeyRef::Atom(crate::term::word(term))
    } else if let Some(encoded) = measured_key(term) {
        KeyRef::Bytes(ByteKind::Term, encoded.as_slice())
    } else {
        return encode_key(term);
    };
    match key {
        KeyRef::Bytes(_, bytes) if bytes.len() > MAX_KEY_BYTES => Err(key_too_large(bytes.len())),
        key => Ok(KeyBuf::Direct(key)),
    }
}

/// Any other term as a key: its external format, after [`check_key_size`]. A key that holds
/// a term whose size the walk cannot tell is refused with the atom `:measure`: Elixir measures
/// it (`:erlang.external_size/1`, whose cost follows the number of terms, which the walk has
/// bounded) and passes a key that fits as `{:"$hotpath_measured_key", term_to_binary(key)}`
/// (see [`measured_key`]). Its time is reported to the scheduler (up to some tens of µs for a
/// refused large term).
#[inline(never)]
fn encode_key(term: Term<'_>) -> NifResult<KeyBuf<'_>> {
    let started = Instant::now();
    let result = check_key_size(term).and_then(|size| match size {
        KeySize::Unmeasured => Err(rustler::Error::Atom("measure")),
        KeySize::Fits => {
            let encoded = term.to_binary();
            if encoded.len() > MAX_KEY_BYTES {
                return Err(key_too_large(encoded.len()));
            }
            Ok(KeyBuf::Encoded(encoded))
        }
    });
    charge_since(term.get_env(), started);
    result
}

/// The encoding inside `{:"$hotpath_measured_key", encoding}`, the form in which Elixir passes
/// a key it measured. Its identity is that of the key it encodes (the bytes
/// `enif_term_to_binary` would give: `term_to_binary/1` is the same encoder). A caller that
/// builds such a tuple itself only gets a key equal to the one it encodes, of bounded size.
fn measured_key(term: Term<'_>) -> Option<Binary<'_>> {
    let mut elements = tuple_elements(term);
    if elements.len() != 2 {
        return None;
    }
    let (tag, encoded) = (elements.next()?, elements.next()?);
    if tag != atoms::measured_key().to_term(term.get_env()) {
        return None;
    }
    Binary::from_term(encoded).ok()
}

/// What [`check_key_size`] can tell of a key it does not refuse.
enum KeySize {
    /// Every part was measured or bounded: the key can be encoded here.
    Fits,
    /// It holds a bignum, a bitstring that is not a binary or an atom that is not Latin-1,
    /// whose encoded size `erl_nif` cannot tell without encoding it (a megabyte bignum shared
    /// a thousand times is a few words in memory and a gigabyte encoded).
    Unmeasured,
}

/// Refuses, before encoding it, a key whose external format is certainly over
/// [`MAX_KEY_BYTES`], in time bounded by that size whatever the term: every term takes at
/// least one byte of the encoding (counted once, when it is found), and a binary its length,
/// an atom its length, a float 8 and a pid, port or reference 13 more (the least their
/// encodings take), so the walk stops as soon as that lower bound passes the limit (a
/// million-element list costs no more than a small one). Functions are refused: their encoding
/// holds their captured environment, which cannot be measured here.
fn check_key_size(term: Term<'_>) -> NifResult<KeySize> {
    let mut budget = MAX_KEY_BYTES;
    let mut unmeasured = false;
    let mut spend = |n: usize| -> NifResult<()> {
        budget = budget
            .checked_sub(n)
            .ok_or_else(key_too_large_lower_bound)?;
        Ok(())
    };
    spend(1)?;
    let mut stack = vec![term];
    while let Some(term) = stack.pop() {
        match term.get_type() {
            TermType::Binary => match Binary::from_term(term) {
                Ok(binary) => spend(binary.len())?,
                // A bitstring that is not a binary: erl_nif cannot tell its size.
                Err(_) => unmeasured = true,
            },
            TermType::Integer => {
                unmeasured |= term.decode::<i64>().is_err() && term.decode::<u64>().is_err()
            }
            TermType::Atom => match term.atom_to_string() {
                Ok(name) => spend(name.len())?,
                Err(_) => unmeasured = true,
            },
            TermType::Float => spend(8)?,
            TermType::Pid | TermType::Port | TermType::Ref => spend(13)?,
            TermType::Tuple => {
                let elements = tuple_elements(term);
                spend(elements.len())?;
                stack.extend(elements);
            }
            TermType::List => {
                let mut cursor = term;
                loop {
                    match cursor.list_get_cell() {
                        Ok((head, tail)) => {
                            spend(1)?;
                            stack.push(head);
                            cursor = tail;
                        }
                        Err(_) => {
                            if !cursor.is_empty_list() {
                                spend(1)?;
                                stack.push(cursor);
                            }
                            break;
                        }
                    }
                }
            }
            TermType::Map => {
                let size = term.map_size().unwrap_or(0);
                spend(2 * size)?;
                if let Some(entries) = rustler::types::map::MapIterator::new(term) {
                    for (k, v) in entries {
                        stack.push(k);
                        stack.push(v);
                    }
                }
            }
            TermType::Fun => {
                return Err(argument_error(
                    "a function cannot be a rate limiter key (its encoding includes its \
                     captured variables)",
                ))
            }
            _ => {}
        }
    }
    Ok(if unmeasured {
        KeySize::Unmeasured
    } else {
        KeySize::Fits
    })
}

/// The elements of a tuple term, borrowed from the VM without copying them (a huge tuple
/// costs nothing until its elements are visited).
fn tuple_elements(term: Term<'_>) -> impl ExactSizeIterator<Item = Term<'_>> {
    let env = term.get_env();
    let mut arity: rustler::sys::c_int = 0;
    let mut elements: *const rustler::sys::ErlNifTerm = std::ptr::null();
    // SAFETY: `env` is the environment `term` belongs to and both out-pointers are valid
    // locals. `enif_get_tuple` sets them to the tuple's arity and its element array, which
    // lives as long as the term itself (the calling environment, for the whole call).
    let ok = unsafe {
        rustler::sys::enif_get_tuple(env.as_c_arg(), term.as_c_arg(), &mut arity, &mut elements)
    };
    let len = if ok != 0 { arity.max(0) as usize } else { 0 };
    (0..len).map(move |i| {
        // SAFETY: `i < arity`, within the element array described above, valid for `env`.
        unsafe { Term::new(env, *elements.add(i)) }
    })
}

#[cold]
fn key_too_large_lower_bound() -> rustler::Error {
    argument_error(format!(
        "rate limiter keys are at most {MAX_KEY_BYTES} bytes, got a larger term"
    ))
}

#[cold]
fn key_too_large(size: usize) -> rustler::Error {
    argument_error(format!(
        "rate limiter keys are at most {MAX_KEY_BYTES} bytes, got one of {size} bytes"
    ))
}

/// How a limiter of cells names its answers: its policies' names, and whether it answers
/// like a single-policy limiter.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    names: [Atom; MAX_POLICIES],
    plain: bool,
}

/// A single-policy decision; `report`: wrapped as `{:report, decision}` for a denial the
/// caller reports to telemetry.
#[inline(always)]
fn encode_reported(env: Env<'_>, decision: Decision, report: bool) -> Term<'_> {
    let term = encode_decision(env, decision);
    if report && !decision.allowed() {
        (atoms::report(), term).encode(env)
    } else {
        term
    }
}

/// The answer of a multi-policy (or banning) hit or peek:
///
/// * plain (one policy with bans): the single-policy 3-tuples; a banned key gets
///   `{:deny, ban_left, ban_left}`;
/// * several policies: `{:allow, remaining, reset_after, policy}` for the policy closest to
///   exhaustion (fewest remaining, then the longest reset), `{:deny, retry_after | :infinity,
///   reset_after, [violated policies]}` (the largest wait among them), `{:deny, left, left,
///   :banned}`, or `{:deny, wait, wait, :full}` for a new key a full table refused.
///
/// A hit that started a ban comes as `{:ban, answer, length_ms, offences}`, a denial of a
/// limiter that reports them as `{:report, answer}` (for the telemetry events).
fn encode_outcome<'a>(env: Env<'a>, multi: &Shape, outcome: &Outcome, report: bool) -> Term<'a> {
    let answer = match outcome.verdict {
        Verdict::Allowed | Verdict::Denied if multi.plain => {
            encode_decision(env, outcome.tightest.1)
        }
        Verdict::Banned { left: wait }
        | Verdict::BanStarted { length: wait, .. }
        | Verdict::Full { wait }
            if multi.plain =>
        {
            (atoms::deny(), ms_ceil(wait), ms_ceil(wait)).encode(env)
        }
        Verdict::Allowed => match outcome.tightest {
            (
                i,
                Decision::Allow {
                    remaining,
                    reset_after,
                },
            ) => (
                atoms::allow(),
                remaining,
                ms_ceil(reset_after),
                multi.names[i],
            )
                .encode(env),
            // Every policy admitted, so the tightest is an admission.
            (i, _) => (atoms::allow(), 0u64, 0u64, multi.names[i]).encode(env),
        },
        Verdict::Denied => {
            let mut violated = Term::list_new_empty(env);
            for i in (0..MAX_POLICIES).rev() {
                if outcome.violated & (1 << i) != 0 {
                    violated = violated.list_prepend(multi.names[i].encode(env));
                }
            }
            let retry = match outcome.retry_after {
                None => atoms::infinity().encode(env),
                Some(retry) => ms_ceil(retry).encode(env),
            };
            (atoms::deny(), retry, ms_ceil(outcome.reset_after), violated).encode(env)
        }
        Verdict::Banned { left: wait } | Verdict::BanStarted { length: wait, .. } => {
            (atoms::deny(), ms_ceil(wait), ms_ceil(wait), atoms::banned()).encode(env)
        }
        Verdict::Full { wait } => {
            (atoms::deny(), ms_ceil(wait), ms_ceil(wait), atoms::full()).encode(env)
        }
    };
    match outcome.verdict {
        Verdict::BanStarted { length, offences } => {
            let answer = if report {
                (atoms::report(), answer).encode(env)
            } else {
                answer
            };
            (atoms::ban(), answer, ms_ceil(length), offences).encode(env)
        }
        Verdict::Allowed => answer,
        _ if report => (atoms::report(), answer).encode(env),
        _ => answer,
    }
}

#[inline]
fn ms_ceil(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_MS)
}

#[inline(always)]
fn encode_decision(env: Env<'_>, decision: Decision) -> Term<'_> {
    match decision {
        Decision::Allow {
            remaining,
            reset_after,
        } => (atoms::allow(), remaining, ms_ceil(reset_after)).encode(env),
        Decision::Deny {
            retry_after,
            reset_after,
        } => (atoms::deny(), ms_ceil(retry_after), ms_ceil(reset_after)).encode(env),
        Decision::Never { reset_after } => {
            (atoms::deny(), atoms::infinity(), ms_ceil(reset_after)).encode(env)
        }
    }
}

/// Validates a policy without creating a table (option checking at `start_link`).
#[rustler::nif]
fn limiter_validate(
    env: Env,
    algorithm: Atom,
    limit: Term,
    period_ms: Term,
    burst: Term,
) -> NifResult<Atom> {
    charge_minimum(env);
    let algorithm = algorithm_of(algorithm)?;
    let limit = positive(limit, "limit")?;
    let period_ms = positive(period_ms, "period")?;
    let burst = optional_positive(burst, "burst")?;
    lift(Policy::new(algorithm, limit, period_ms, burst))?;
    Ok(rustler::types::atom::ok())
}

/// Creates a table: `limit` per `period_ms` with `burst` (or nil), at most `max_keys` keys and
/// `max_bytes` bytes of out-of-line key data (nil: no bound beyond `max_keys`). Dirty CPU:
/// allocating up to 65,536 shards takes longer than a normal scheduler should be held.
#[rustler::nif(schedule = "DirtyCpu")]
fn limiter_new(
    algorithm: Atom,
    limit: Term,
    period_ms: Term,
    burst: Term,
    max_keys: Term,
    max_bytes: Term,
    on_full_allow: bool,
) -> NifResult<ResourceArc<LimiterResource>> {
    let algorithm = algorithm_of(algorithm)?;
    let limit = positive(limit, "limit")?;
    let period_ms = positive(period_ms, "period")?;
    let burst = optional_positive(burst, "burst")?;
    let (max_keys, max_bytes, on_full) = table_bounds(max_keys, max_bytes, on_full_allow)?;
    let policy = lift(Policy::new(algorithm, limit, period_ms, burst))?;
    guard(|| {
        Ok(ResourceArc::new(LimiterResource(Arc::new(Limiter {
            table: Tables::Single(Table::new(Config {
                policy,
                max_keys,
                max_bytes,
                on_full,
            })),
            epoch_ns: clock::now_ns(),
            report_denies: AtomicBool::new(false),
        }))))
    })
}

/// `max_keys`, `max_bytes` (nil: no bound beyond `max_keys`) and `on_full` of a new table.
fn table_bounds(
    max_keys: Term,
    max_bytes: Term,
    on_full_allow: bool,
) -> NifResult<(usize, usize, OnFull)> {
    let max_keys = positive(max_keys, "max_keys")?;
    if max_keys > 1 << 32 {
        return Err(argument_error("max_keys must be at most 2^32"));
    }
    let max_bytes = if is_nil(max_bytes) {
        usize::MAX
    } else {
        match max_bytes.decode::<u64>() {
            Ok(n) if n <= MAX_BYTES_OPTION => n as usize,
            _ => {
                return Err(argument_error(format!(
                    "max_bytes must be nil or a non-negative integer up to 2^48, got: {}",
                    describe(max_bytes)
                )))
            }
        }
    };
    let on_full = if on_full_allow {
        OnFull::Allow
    } else {
        OnFull::Deny
    };
    Ok((max_keys as usize, max_bytes, on_full))
}

/// The policies `[{name, algorithm, limit, period_ms, burst | nil}]` and the ban rule
/// (`nil` or `{after | nil, within_ms | nil, for_ms, backoff, max_ms | nil}`) of a limiter.
fn rules_arg(policies: Term, ban: Term) -> NifResult<(Rules, [Atom; MAX_POLICIES])> {
    let list: Vec<(Atom, Atom, Term, Term, Term)> = policies.decode().map_err(|_| {
        argument_error("policies must be a list of {name, algorithm, limit, period, burst}")
    })?;
    if list.is_empty() || list.len() > MAX_POLICIES {
        return Err(argument_error(format!(
            "a limiter has between 1 and {MAX_POLICIES} policies, got {}",
            list.len()
        )));
    }
    let mut names = [atoms::nil(); MAX_POLICIES];
    let mut parsed = Vec::with_capacity(list.len());
    for (i, (name, algorithm, limit, period, burst)) in list.into_iter().enumerate() {
        if names[..i].contains(&name) {
            return Err(argument_error("policy names must be distinct"));
        }
        names[i] = name;
        let policy = Policy::new(
            algorithm_of(algorithm)?,
            positive(limit, "limit")?,
            positive(period, "period")?,
            optional_positive(burst, "burst")?,
        );
        parsed.push(lift(policy)?);
    }
    let ban = if is_nil(ban) {
        None
    } else {
        let (after, within, for_ms, backoff, max): (Term, Term, Term, f64, Term) = ban
            .decode()
            .map_err(|_| argument_error("ban must be {after, within, for, backoff, max}"))?;
        Some(lift(Ban::new(
            optional_positive(after, "ban after")?,
            optional_positive(within, "ban within")?,
            positive(for_ms, "ban for")?,
            backoff,
            optional_positive(max, "ban max")?,
        ))?)
    };
    Ok((lift(Rules::new(parsed, ban))?, names))
}

/// Validates the policies and ban rule of a limiter without creating it.
#[rustler::nif]
fn limiter_validate_rules(env: Env, policies: Term, ban: Term) -> NifResult<Atom> {
    charge_minimum(env);
    rules_arg(policies, ban)?;
    Ok(rustler::types::atom::ok())
}

/// Creates a table of cells: several named policies and an optional ban rule (see
/// [`rules_arg`]); `plain`: a single policy (with bans) whose answers keep the
/// single-policy shape. Dirty CPU, as `limiter_new`.
#[rustler::nif(schedule = "DirtyCpu")]
fn limiter_new_multi(
    policies: Term,
    ban: Term,
    max_keys: Term,
    max_bytes: Term,
    on_full_allow: bool,
    plain: bool,
) -> NifResult<ResourceArc<LimiterResource>> {
    let (rules, names) = rules_arg(policies, ban)?;
    let (max_keys, max_bytes, on_full) = table_bounds(max_keys, max_bytes, on_full_allow)?;
    if plain && rules.policies().len() != 1 {
        return Err(argument_error("a plain limiter has one policy"));
    }
    guard(|| {
        let table = Cells::new(
            Config {
                policy: rules.policies()[0],
                max_keys,
                max_bytes,
                on_full,
            },
            &rules,
        );
        Ok(ResourceArc::new(LimiterResource(Arc::new(Limiter {
            table: Tables::Multi(Multi {
                table,
                rules,
                shape: Shape { names, plain },
            }),
            epoch_ns: clock::now_ns(),
            report_denies: AtomicBool::new(false),
        }))))
    })
}

/// Publishes `limiter` under the atom `name` for [`limiter_hit`]; `report_denies`: whether
/// its denials come back marked for a telemetry event.
#[rustler::nif]
fn limiter_publish(
    env: Env,
    limiter: ResourceArc<LimiterResource>,
    name: Atom,
    report_denies: bool,
) -> Atom {
    // Publishing takes the table's write lock (it waits for readers): charged by its time.
    let started = Instant::now();
    limiter
        .report_denies
        .store(report_denies, Ordering::Relaxed);
    PUBLISHED.publish(name.as_c_arg(), Arc::clone(&limiter.0));
    charge_since(env, started);
    rustler::types::atom::ok()
}

/// Removes `limiter` from under `name` (if it is still the one published there).
#[rustler::nif]
fn limiter_unpublish(env: Env, limiter: ResourceArc<LimiterResource>, name: Atom) -> Atom {
    let started = Instant::now();
    PUBLISHED.unpublish(name.as_c_arg(), &limiter.0);
    charge_since(env, started);
    rustler::types::atom::ok()
}

/// The hot path, `limiter_hit(name, key, cost)`: a hit of `cost` with the table's policy at
/// the current time, on the limiter published under the atom `name`. A denial comes back as
/// `{:report, decision}` when the limiter reports denials.
///
/// When nothing is published under `name` it returns the atom `:unpublished`: that is a
/// cluster limiter, whose table
/// is published under an internal name, or no limiter at all. Elixir tells the two apart off
/// the hot path and raises for an unknown name.
///
/// Registered with [`fast_nif!`] (see `fast_nif.rs`); `bench.rs` has its `#[rustler::nif]`
/// twin for the A/B row.
fn limiter_hit<'a>(env: Env<'a>, [name, key, cost]: [Term<'a>; 3]) -> NifResult<Term<'a>> {
    hit_published(env, name, key, cost, Limiter::now_ns)
}

fast_nif!("limiter_hit", 3, limiter_hit);

/// `limiter_hit` with the time on the limiter's clock given by `now` (the benchmark's
/// plain-clock variant passes another clock).
pub(crate) fn hit_published<'a>(
    env: Env<'a>,
    name: Term<'a>,
    key: Term<'a>,
    cost: Term<'a>,
    now: impl FnOnce(&Limiter) -> u64,
) -> NifResult<Term<'a>> {
    let cost = positive(cost, "cost")?;
    let key = decode_key(key)?;
    // The answer is encoded while the limiter is borrowed (a multi-policy answer names its
    // policies), so nothing of it is copied out.
    let (answer, work) = PUBLISHED
        .find(name.as_c_arg(), |limiter| {
            let now = now(limiter);
            let report = limiter.report_denies.load(Ordering::Relaxed);
            match &limiter.table {
                Tables::Single(table) => {
                    let (decision, work) = table.hit_counted(key.as_key(), now, cost, None);
                    (encode_reported(env, decision, report), work)
                }
                Tables::Multi(multi) => {
                    multi_hit(env, multi, key.as_key(), now, cost, None, report)
                }
            }
        })
        .unwrap_or_else(|| (atoms::unpublished().encode(env), 0));
    charge_work(env, work);
    Ok(answer)
}

/// A multi-policy hit, encoded (see [`encode_outcome`]), and the table work it did.
#[inline]
fn multi_hit<'a>(
    env: Env<'a>,
    multi: &Multi,
    key: KeyRef<'_>,
    now: u64,
    cost: u64,
    policies: Option<&[Policy]>,
    report: bool,
) -> (Term<'a>, usize) {
    let op = MultiHit {
        rules: &multi.rules,
        policies,
        cost,
    };
    let (outcome, work) = multi.table.hit(key, now, &op);
    (encode_outcome(env, &multi.shape, &outcome, report), work)
}

/// The general path: `op` (`:hit` or `:peek`) with an optional injected `now` (ms on the
/// limiter's clock) and an optional per-call policy `{limit, period_ms, burst | nil}` (for a
/// limiter of several policies, a list of them, one per policy). For such a limiter `op` may
/// also be `{:peek, index}`: the plain answer of policy `index` alone (a banned key is
/// refused for the ban's time, as by every policy).
#[rustler::nif]
fn limiter_call<'a>(
    env: Env<'a>,
    limiter: &LimiterResource,
    op: Term<'a>,
    key: Term<'a>,
    cost: Term<'a>,
    now: Term<'a>,
    policy: Term<'a>,
) -> NifResult<Term<'a>> {
    let cost = positive(cost, "cost")?;
    let key = decode_key(key)?;
    let now = now_arg(limiter, now)?;
    let table = match &limiter.table {
        Tables::Single(table) => table,
        Tables::Multi(multi) => return multi_call(env, multi, op, key, cost, now, policy),
    };
    let policy = policy_arg(table.config().policy.algorithm(), policy)?;
    let Ok(op) = op.decode::<Atom>() else {
        return Err(argument_error("op must be :hit or :peek"));
    };
    let decision = if op == atoms::hit() {
        let (decision, work) = table.hit_counted(key.as_key(), now, cost, policy.as_ref());
        charge_work(env, work);
        decision
    } else if op == atoms::peek() {
        table.peek(key.as_key(), now, cost, policy.as_ref())
    } else {
        return Err(argument_error("op must be :hit or :peek"));
    };
    Ok(encode_decision(env, decision))
}

/// [`limiter_call`] on a limiter of cells.
#[allow(clippy::too_many_arguments)]
fn multi_call<'a>(
    env: Env<'a>,
    multi: &Multi,
    op: Term<'a>,
    key: KeyBuf<'_>,
    cost: u64,
    now: u64,
    policy: Term<'a>,
) -> NifResult<Term<'a>> {
    let policies = multi_policies_arg(multi, policy)?;
    let policies = policies.as_deref();
    if let Ok(op) = op.decode::<Atom>() {
        if op == atoms::hit() {
            // Elixir reports the denials of this path itself (as for a table of slots).
            let (term, work) = multi_hit(env, multi, key.as_key(), now, cost, policies, false);
            charge_work(env, work);
            return Ok(term);
        }
        if op == atoms::peek() {
            let outcome = multi.table.read(key.as_key(), |cell| {
                multi.rules.peek(cell, now, cost, policies)
            });
            return Ok(encode_outcome(env, &multi.shape, &outcome, false));
        }
    } else if let Ok((tag, index)) = op.decode::<(Atom, usize)>() {
        if tag == atoms::peek() && index < multi.rules.policies().len() {
            let decision = multi.table.read(key.as_key(), |cell| {
                multi.rules.peek_policy(cell, now, cost, index, policies)
            });
            return Ok(encode_decision(env, decision));
        }
    }
    Err(argument_error(
        "op must be :hit, :peek or {:peek, policy_index}",
    ))
}

/// Per-call policies of a limiter of cells: nil, a list of `{limit, period, burst | nil}`
/// (one per policy, in order), or for one policy that tuple alone.
fn multi_policies_arg(multi: &Multi, policy: Term) -> NifResult<Option<Vec<Policy>>> {
    if is_nil(policy) {
        return Ok(None);
    }
    let rules = multi.rules.policies();
    let terms: Vec<Term> = if policy.is_tuple() && rules.len() == 1 {
        vec![policy]
    } else {
        policy.decode().map_err(|_| {
            argument_error("policies must be a list of {limit, period, burst | nil}")
        })?
    };
    if terms.len() != rules.len() {
        return Err(argument_error(format!(
            "expected {} per-call policies, got {}",
            rules.len(),
            terms.len()
        )));
    }
    rules
        .iter()
        .zip(terms)
        .map(|(rule, term)| Ok(policy_arg(rule.algorithm(), term)?.unwrap_or(*rule)))
        .collect::<NifResult<Vec<Policy>>>()
        .map(Some)
}

/// The ban operations of a limiter with a ban rule, and the per-policy reset of a limiter of
/// several policies: `{:ban, ms}` (answers `true`, or `false` when a full table had no room),
/// `:unban` (whether the key had a ban, strikes or offences), `:banned` (`false` or the
/// milliseconds left) and `{:reset, index}` (`true`, or `false` for a key not stored).
#[rustler::nif]
fn limiter_ban<'a>(
    env: Env<'a>,
    limiter: &LimiterResource,
    op: Term<'a>,
    key: Term<'a>,
    now: Term<'a>,
) -> NifResult<Term<'a>> {
    let key = decode_key(key)?;
    let now = now_arg(limiter, now)?;
    let Tables::Multi(multi) = &limiter.table else {
        return Err(argument_error(
            "this limiter has no :ban option and a single policy",
        ));
    };
    let has_ban = multi.rules.ban().is_some();
    let apply = |op: BanOp| {
        let (done, work) = multi.table.operate(
            key.as_key(),
            now,
            &Operator {
                rules: &multi.rules,
                op,
            },
        );
        charge_work(env, work);
        Ok(done.encode(env))
    };
    if let Ok(op) = op.decode::<Atom>() {
        if op == atoms::unban() && has_ban {
            return apply(BanOp::Unban);
        }
        if op == atoms::banned() && has_ban {
            let state = multi
                .table
                .read(key.as_key(), |cell| multi.rules.ban_state(cell, now));
            return Ok(if state.banned(now) {
                ms_ceil(state.until - now).encode(env)
            } else {
                false.encode(env)
            });
        }
    } else if let Ok((tag, arg)) = op.decode::<(Atom, u64)>() {
        if tag == atoms::ban() && has_ban {
            if arg == 0 || arg > Ban::MAX_MS {
                return Err(argument_error(format!(
                    "a ban lasts 1..{} milliseconds (100 days), got {arg}",
                    Ban::MAX_MS
                )));
            }
            return apply(BanOp::Ban(arg * NS_PER_MS));
        }
        if tag == atoms::reset() && (arg as usize) < multi.rules.policies().len() {
            return apply(BanOp::ResetPolicy(arg as usize));
        }
    }
    Err(argument_error(if has_ban {
        "op must be {:ban, ms}, :unban, :banned or {:reset, policy_index}"
    } else {
        "this limiter has no :ban option: op must be {:reset, policy_index}"
    }))
}

fn now_arg(limiter: &LimiterResource, now: Term) -> NifResult<u64> {
    if is_nil(now) {
        return Ok(limiter.now_ns());
    }
    match now.decode::<u64>() {
        Ok(ms) if ms <= MAX_NOW_MS => Ok(ms * NS_PER_MS),
        _ => Err(argument_error(format!(
            "now must be a non-negative integer of milliseconds up to {MAX_NOW_MS}, got: {}",
            describe(now)
        ))),
    }
}

fn policy_arg(algorithm: Algorithm, policy: Term) -> NifResult<Option<Policy>> {
    if is_nil(policy) {
        return Ok(None);
    }
    let (limit, period, burst): (Term, Term, Term) = policy
        .decode()
        .map_err(|_| argument_error("policy must be {limit, period, burst | nil}"))?;
    let limit = positive(limit, "limit")?;
    let period = positive(period, "period")?;
    let burst = optional_positive(burst, "burst")?;
    lift(Policy::new(algorithm, limit, period, burst)).map(Some)
}

/// `:ok` for a key every limiter accepts, `:measure` for one Elixir measures first (see
/// [`encode_key`]); an `ArgumentError` otherwise. For callers that send a key elsewhere (a
/// cluster limiter's remote owner), so a bad key is refused in the caller.
#[rustler::nif]
fn limiter_check_key(env: Env, key: Term) -> NifResult<Atom> {
    decode_key(key)?;
    charge_minimum(env);
    Ok(rustler::types::atom::ok())
}

/// Forgets a key; returns whether it was stored.
#[rustler::nif]
fn limiter_reset(limiter: &LimiterResource, key: Term) -> NifResult<bool> {
    let key = decode_key(key)?;
    Ok(limiter.table.reset(key.as_key()))
}

/// Forgets every key. Proportional to the table's size (freeing a million keys takes
/// milliseconds), so it runs on a dirty CPU scheduler; hits proceed meanwhile, each shard being
/// locked only while it is emptied.
#[rustler::nif(schedule = "DirtyCpu")]
fn limiter_clear(limiter: &LimiterResource) -> Atom {
    limiter.table.clear();
    rustler::types::atom::ok()
}

/// Milliseconds on the limiter's clock (what `now:` options are measured against).
#[rustler::nif]
fn limiter_now(env: Env, limiter: &LimiterResource) -> u64 {
    charge_minimum(env);
    limiter.now_ns() / NS_PER_MS
}

#[derive(NifMap)]
struct LimiterStats {
    keys: u64,
    memory_bytes: u64,
    key_bytes: u64,
    full_events: u64,
    shards: u64,
}

/// Keys, estimated memory, out-of-line key bytes, full-table events and shard count: counters
/// only, O(1) whatever the table's size.
#[rustler::nif]
fn limiter_stats(env: Env, limiter: &LimiterResource) -> LimiterStats {
    charge_minimum(env);
    let stats = limiter.table.stats();
    LimiterStats {
        keys: stats.keys as u64,
        memory_bytes: stats.memory_bytes as u64,
        key_bytes: stats.key_bytes as u64,
        full_events: stats.full_events,
        shards: stats.shards as u64,
    }
}

/// One sweep chunk from shard `from` at `now` (nil: the clock), spending at most
/// `budget_us` microseconds (capped below 1 ms) plus the shard it is in. Returns
/// `{next_shard | nil, removed, keys}`.
///
/// Dirty CPU: a chunk's own work is bounded by the budget, but shrinking emptied shards frees
/// memory, and after a flood of keys expires the allocator may return tens of MB to the OS
/// inside one `free` (measured: one chunk of 1M expired keys took 2.7-6.3 ms where the others
/// took 0.3 ms). Hits meanwhile proceed, each shard being locked only while it is purged.
#[rustler::nif(schedule = "DirtyCpu")]
fn limiter_sweep<'a>(
    env: Env<'a>,
    limiter: &LimiterResource,
    from: u64,
    now: Term<'a>,
    budget_us: u64,
) -> NifResult<Term<'a>> {
    let now = now_arg(limiter, now)?;
    let budget = Duration::from_micros(budget_us.min(MAX_SWEEP_BUDGET_US));
    let chunk = guard(|| Ok(limiter.table.sweep(from as usize, now, budget)))?;
    let next = match chunk.next {
        Some(n) => (n as u64).encode(env),
        None => atoms::nil().encode(env),
    };
    Ok((next, chunk.removed as u64, limiter.table.len() as u64).encode(env))
}
