//! Chunked, cancellable kernels for `Hotpath.Compute` and `Hotpath.Digest`.
//!
//! A job is a resource holding a kernel's state, a cancel flag and counters. Elixir drives it
//! with repeated dirty-CPU calls, each running one budgeted step (about 10 ms), so a job
//! never holds a scheduler longer than one step and can be stopped between and *within*
//! steps:
//!
//! * `compute_job_cancel/1` (normal scheduler) sets the flag;
//! * the resource monitors the process that created it: when that process dies (a timeout
//!   killed it, or its caller went away) `down` sets the flag, and a step that is running on
//!   a dirty scheduler at that moment returns within a fraction of a millisecond.
//!
//! Panics inside a step are caught and returned as `{:error, {:panic, message}}`; the job is
//! then failed and every later step says so.

use crate::error::{argument_error, catch, NifResult};
use hotpath_core::compute::{spin::Spin, Budget, CancelFlag, Step};
use hotpath_core::digest::{self, Algorithm, Digester};
use rustler::{
    Atom, Binary, Encoder, Env, LocalPid, Monitor, NewBinary, OwnedEnv, Resource, ResourceArc, Term,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

mod atoms {
    rustler::atoms! {
        ok, error, more, cancelled, panic, nil, spin, digest, blake3, sha256,
        running, done, failed, busy, steps, bytes, state, step_limit, hotpath_native_idle
    }
}

/// Largest input `digest_small` hashes on a normal scheduler: ~0.3-0.5 ms for SHA-256 without
/// SHA extensions (~250-400 MB/s), far less with them or for BLAKE3.
const SMALL_DIGEST_MAX: usize = 128 * 1024;

// Native work currently inside a job step or a password hash, and the most seen at once since
// the last reset: lets tests observe the pool's concurrency bound from the native side.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Native work in progress per calling process, and who wants to hear when it ends.
///
/// A process killed while it runs a dirty NIF exits at once (its links and monitors fire), but
/// the NIF runs on until it returns: an argon2 hash cannot be interrupted. A `Hotpath.Compute`
/// pool that freed the slot of such a job at its exit would start the next job while the old
/// one still computes. So the pool asks [`compute_native_watch`] whether the exited process
/// still has native work; if so the slot stays taken until the last [`ActiveGuard`] of that
/// process drops and sends the pool `{:hotpath_native_idle, pid}`.
#[derive(Default)]
struct Busy {
    count: usize,
    waiters: Vec<LocalPid>,
}

static BUSY: LazyLock<Mutex<HashMap<LocalPid, Busy>>> = LazyLock::new(Default::default);

fn busy() -> std::sync::MutexGuard<'static, HashMap<LocalPid, Busy>> {
    // The map is left consistent by every critical section (no panics inside), so a poisoned
    // lock still holds valid data.
    BUSY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts one piece of running native work of the calling process for as long as it lives
/// (also when unwinding); see [`Busy`].
pub struct ActiveGuard<'a> {
    _env: Env<'a>,
    pid: LocalPid,
}

impl<'a> ActiveGuard<'a> {
    pub fn enter(env: Env<'a>) -> Self {
        let pid = env.pid();
        busy().entry(pid).or_default().count += 1;
        let now = ACTIVE.fetch_add(1, Ordering::AcqRel) + 1;
        PEAK.fetch_max(now, Ordering::AcqRel);
        ActiveGuard { _env: env, pid }
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
        let waiters = {
            let mut map = busy();
            match map.get_mut(&self.pid) {
                Some(entry) if entry.count > 1 => {
                    entry.count -= 1;
                    Vec::new()
                }
                Some(_) => map.remove(&self.pid).map(|e| e.waiters).unwrap_or_default(),
                None => Vec::new(),
            }
        };
        if waiters.is_empty() {
            return;
        }
        // Waiters exist only once the calling process has exited (a pool watches a job after
        // its EXIT), and a message sent through the env of an exited process is not delivered:
        // send from a thread of our own instead (rare: only cancelled or killed native work).
        let pid = self.pid;
        // If no thread can start, the slot stays taken (`:draining` in stats) rather than
        // overrunning the bound.
        let _ = std::thread::Builder::new()
            .name("hotpath-idle".into())
            .spawn(move || {
                let mut owned = OwnedEnv::new();
                for waiter in waiters {
                    // A dead waiter (a pool that crashed meanwhile) just drops the message.
                    let _ = owned.send_and_clear(&waiter, |env| {
                        (atoms::hotpath_native_idle(), pid).encode(env)
                    });
                }
            });
    }
}

/// Called by a pool when a job process has exited: `true` if `pid` still runs native work, in
/// which case `waiter` is sent `{:hotpath_native_idle, pid}` when that work has ended; `false`
/// if it runs none (nothing will be sent).
#[rustler::nif]
fn compute_native_watch(env: Env<'_>, pid: LocalPid, waiter: LocalPid) -> bool {
    account(env);
    match busy().get_mut(&pid) {
        Some(entry) => {
            entry.waiters.push(waiter);
            true
        }
        None => false,
    }
}

/// Reports the time of a cheap NIF (a few µs at most) to the scheduler: a NIF call counts as
/// one reduction however long it runs, so a process calling cheap NIFs in a loop would hold its
/// scheduler for a whole slice of 4000 calls. 1% of a slice per call ends the slice within 100
/// calls, well under 1 ms.
pub fn account(env: Env<'_>) {
    rustler::schedule::consume_timeslice(env, 1);
}

/// The pool processes now running, each removed by its resource's monitor when it exits: lets
/// `Hotpath.Compute` tell a pool from any other process without sending it anything.
static POOLS: LazyLock<Mutex<HashSet<LocalPid>>> = LazyLock::new(Default::default);

fn pools() -> std::sync::MutexGuard<'static, HashSet<LocalPid>> {
    POOLS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a pool process in its state; registers the pool while the process lives.
pub struct PoolMark {
    pid: LocalPid,
}

#[rustler::resource_impl]
impl Resource for PoolMark {
    fn down<'a>(&'a self, _env: Env<'a>, pid: LocalPid, _monitor: Monitor) {
        pools().remove(&pid);
    }

    fn destructor(self, _env: Env<'_>) {
        pools().remove(&self.pid);
    }
}

/// Registers the calling process as a pool until it exits.
#[rustler::nif]
fn compute_pool_register(env: Env<'_>) -> ResourceArc<PoolMark> {
    account(env);
    let pid = env.pid();
    pools().insert(pid);
    let mark = ResourceArc::new(PoolMark { pid });
    if mark.monitor(Some(env), &pid).is_none() {
        // The caller is exiting: it is no pool.
        pools().remove(&pid);
    }
    mark
}

/// `true` if `pid` is a running pool.
#[rustler::nif]
fn compute_is_pool(env: Env<'_>, pid: LocalPid) -> bool {
    account(env);
    pools().contains(&pid)
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const CANCELLED: u8 = 2;
const FAILED: u8 = 3;

enum Kernel {
    Spin(Spin),
    Digest(Option<Digester>),
}

/// A chunked job: its kernel, cancel flag and progress counters.
pub struct Job {
    cancel: CancelFlag,
    step_length: Duration,
    steps: AtomicU64,
    bytes: AtomicU64,
    state: AtomicU8,
    /// Steps in progress (normally 0 or 1): counted from before a step checks the cancel flag
    /// until after it counts itself, so "cancelled and not busy" means the counters are final.
    /// Why, with every access to this counter, the state and the cancel flag sequentially
    /// consistent:
    /// a reader that saw the flag set and then `in_step == 0` read the flag before the counter,
    /// and the counter before any later step's increment (it did not see it); that step reads
    /// the flag after its increment, so in the single order of these operations the flag's
    /// store comes before the step's read, which therefore sees the job cancelled.
    in_step: AtomicU32,
    kernel: Mutex<Kernel>,
}

/// Counts one step in [`Job::in_step`] for as long as it lives (also when unwinding).
struct InStep<'a>(&'a AtomicU32);

impl<'a> InStep<'a> {
    fn enter(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InStep(counter)
    }
}

impl Drop for InStep<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[rustler::resource_impl]
impl Resource for Job {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        self.cancel.cancel();
    }
}

impl Job {
    fn new(kernel: Kernel, step_length: Duration) -> Self {
        Job {
            cancel: CancelFlag::new(),
            step_length,
            steps: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            state: AtomicU8::new(RUNNING),
            in_step: AtomicU32::new(0),
            kernel: Mutex::new(kernel),
        }
    }

    /// Runs `f` on the kernel as one step: counted, panic-safe, and refusing to run a job that
    /// is already cancelled, failed or done.
    fn step<'a, T>(
        &self,
        env: Env<'a>,
        f: impl FnOnce(&mut Kernel, &CancelFlag, &Budget) -> (Step, T),
        on_more: impl FnOnce(Env<'a>, T) -> Term<'a>,
        on_done: impl FnOnce(Env<'a>, T) -> Term<'a>,
    ) -> Term<'a> {
        let _in_step = InStep::enter(&self.in_step);
        match self.state.load(Ordering::SeqCst) {
            RUNNING => {}
            DONE => return on_done_again(env),
            CANCELLED => return cancelled(env),
            _ => return failed(env),
        }
        if self.cancel.is_cancelled() {
            self.state.store(CANCELLED, Ordering::SeqCst);
            return cancelled(env);
        }
        let _active = ActiveGuard::enter(env);
        let budget = Budget::new(self.step_length);
        let outcome = catch(|| {
            let mut kernel = self.kernel.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut kernel, &self.cancel, &budget)
        });
        self.steps.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok((Step::More, t)) => on_more(env, t),
            Ok((Step::Done, t)) => on_done(env, t),
            Ok((Step::Cancelled, _)) => {
                self.state.store(CANCELLED, Ordering::SeqCst);
                cancelled(env)
            }
            Err(message) => {
                self.state.store(FAILED, Ordering::SeqCst);
                self.kernel.clear_poison();
                (atoms::error(), (atoms::panic(), message)).encode(env)
            }
        }
    }
}

fn cancelled(env: Env<'_>) -> Term<'_> {
    (atoms::error(), atoms::cancelled()).encode(env)
}

fn failed(env: Env<'_>) -> Term<'_> {
    (
        atoms::error(),
        (
            atoms::panic(),
            "the job failed in an earlier step (a panic)".to_string(),
        ),
    )
        .encode(env)
}

fn on_done_again(env: Env<'_>) -> Term<'_> {
    (atoms::error(), atoms::done()).encode(env)
}

pub(crate) fn decode_algorithm(alg: Atom) -> NifResult<Algorithm> {
    if alg == atoms::blake3() {
        Ok(Algorithm::Blake3)
    } else if alg == atoms::sha256() {
        Ok(Algorithm::Sha256)
    } else {
        Err(argument_error(
            "unknown digest algorithm; valid algorithms: :blake3, :sha256",
        ))
    }
}

fn decode_step_us(step_us: u64) -> NifResult<Duration> {
    if (1..=1_000_000).contains(&step_us) {
        Ok(Duration::from_micros(step_us))
    } else {
        Err(argument_error(format!(
            "step length must be 1 to 1000000 microseconds, got {step_us}"
        )))
    }
}

/// Creates a job owned (monitored) by the calling process.
///
/// `kind` is `{:spin, steps, step_us, panic_at | nil}` or `{:digest, algorithm, step_us}`.
#[rustler::nif]
fn compute_job_new<'a>(env: Env<'a>, kind: Term<'a>) -> NifResult<ResourceArc<Job>> {
    account(env);
    let bad = || {
        argument_error(
            "job kind must be {:spin, steps, step_us, panic_at | nil} or {:digest, :blake3 | :sha256, step_us}",
        )
    };
    let tuple = rustler::types::tuple::get_tuple(kind).map_err(|_| bad())?;
    let tag: Atom = tuple.first().ok_or_else(bad)?.decode().map_err(|_| bad())?;
    let job = if tag == atoms::spin() && tuple.len() == 4 {
        let steps: u64 = tuple[1].decode().map_err(|_| bad())?;
        let step = decode_step_us(tuple[2].decode().map_err(|_| bad())?)?;
        let panic_at: Option<u64> = if tuple[3].decode::<Atom>().ok() == Some(atoms::nil()) {
            None
        } else {
            Some(tuple[3].decode().map_err(|_| bad())?)
        };
        let spin = Spin::new(steps, step, panic_at).map_err(crate::error::to_nif)?;
        Job::new(Kernel::Spin(spin), step)
    } else if tag == atoms::digest() && tuple.len() == 3 {
        let alg = decode_algorithm(tuple[1].decode().map_err(|_| bad())?)?;
        let step = decode_step_us(tuple[2].decode().map_err(|_| bad())?)?;
        Job::new(Kernel::Digest(Some(Digester::new(alg))), step)
    } else {
        return Err(bad());
    };
    let job = ResourceArc::new(job);
    // The monitor lives as long as the resource; no demonitor needed.
    let _ = job.monitor(Some(env), &env.pid());
    Ok(job)
}

/// Sets the job's cancel flag. Returns `true` if this call set it.
#[rustler::nif]
fn compute_job_cancel(env: Env<'_>, job: ResourceArc<Job>) -> bool {
    account(env);
    job.cancel.cancel()
}

/// `%{state: :running | :done | :cancelled | :failed, busy: bool, steps: n, bytes: n}` without
/// locking. `busy`: a step is running; it is read after the state, so a cancelled job that is
/// not busy runs no more steps (a later step sees the cancellation before it counts).
#[rustler::nif]
fn compute_job_info(env: Env<'_>, job: ResourceArc<Job>) -> NifResult<Term<'_>> {
    account(env);
    let state = match job.state.load(Ordering::SeqCst) {
        RUNNING if job.cancel.is_cancelled() => atoms::cancelled(),
        RUNNING => atoms::running(),
        DONE => atoms::done(),
        CANCELLED => atoms::cancelled(),
        _ => atoms::failed(),
    };
    let map = rustler::types::map::map_new(env)
        .map_put(atoms::state(), state)?
        .map_put(atoms::busy(), job.in_step.load(Ordering::SeqCst) > 0)?
        .map_put(atoms::steps(), job.steps.load(Ordering::Acquire))?
        .map_put(atoms::bytes(), job.bytes.load(Ordering::Acquire))?;
    Ok(map)
}

/// One step of a spin job: `:more`, `{:ok, checksum}`, `{:error, :cancelled}` or
/// `{:error, {:panic, message}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn compute_spin_step(env: Env<'_>, job: ResourceArc<Job>) -> NifResult<Term<'_>> {
    if !matches!(
        *job.kernel.lock().unwrap_or_else(PoisonError::into_inner),
        Kernel::Spin(_)
    ) {
        return Err(argument_error("not a spin job"));
    }
    let job_ref = &job;
    Ok(job.step(
        env,
        |kernel, cancel, _budget| match kernel {
            Kernel::Spin(spin) => {
                let step = spin.step(cancel);
                (step, spin.checksum())
            }
            // Checked above; a concurrent misuse ends the job instead of panicking.
            Kernel::Digest(_) => (Step::Cancelled, 0),
        },
        |env, _| atoms::more().encode(env),
        |env, checksum| {
            job_ref.state.store(DONE, Ordering::SeqCst);
            (atoms::ok(), checksum).encode(env)
        },
    ))
}

/// Hashes `data[offset..]` for one step: `{:more, offset}` when the budget ran out,
/// `{:ok, byte_size}` when all of `data` is hashed, or `{:error, :cancelled | {:panic, _}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn compute_digest_update<'a>(
    env: Env<'a>,
    job: ResourceArc<Job>,
    data: Binary<'a>,
    offset: usize,
) -> NifResult<Term<'a>> {
    if offset > data.len() {
        return Err(argument_error(format!(
            "offset {offset} is beyond the end of the data ({} bytes)",
            data.len()
        )));
    }
    if !matches!(
        *job.kernel.lock().unwrap_or_else(PoisonError::into_inner),
        Kernel::Digest(Some(_))
    ) && job.state.load(Ordering::SeqCst) == RUNNING
    {
        return Err(argument_error("not a digest job, or already finished"));
    }
    let bytes = &job.bytes;
    Ok(job.step(
        env,
        |kernel, cancel, budget| match kernel {
            Kernel::Digest(Some(d)) => {
                let progress = d.update_within(&data[offset..], budget, cancel);
                bytes.fetch_add(progress.consumed as u64, Ordering::AcqRel);
                (progress.step, offset + progress.consumed)
            }
            // Checked above; a concurrent `finish` ends the job instead of panicking.
            _ => (Step::Cancelled, offset),
        },
        |env, at| (atoms::more(), at).encode(env),
        |env, at| (atoms::ok(), at).encode(env),
    ))
}

/// Finishes a digest job: `{:ok, digest}`, or `{:error, :cancelled | {:panic, _} | :done}`.
/// Finalising is a few microseconds, so this runs on a normal scheduler.
#[rustler::nif]
fn compute_digest_finish(env: Env<'_>, job: ResourceArc<Job>) -> NifResult<Term<'_>> {
    account(env);
    match job.state.load(Ordering::SeqCst) {
        RUNNING if job.cancel.is_cancelled() => {
            job.state.store(CANCELLED, Ordering::SeqCst);
            return Ok(cancelled(env));
        }
        RUNNING => {}
        DONE => return Ok(on_done_again(env)),
        CANCELLED => return Ok(cancelled(env)),
        _ => return Ok(failed(env)),
    }
    // A step may hold the lock on a dirty scheduler; never wait for it here.
    let mut kernel = match job.kernel.try_lock() {
        Ok(kernel) => kernel,
        Err(_) => return Err(argument_error("the digest job is busy in another call")),
    };
    match &mut *kernel {
        Kernel::Digest(digester) => match digester.take() {
            Some(d) => {
                job.state.store(DONE, Ordering::SeqCst);
                Ok((atoms::ok(), bytes_term(env, &d.finalize())).encode(env))
            }
            None => Ok(on_done_again(env)),
        },
        Kernel::Spin(_) => Err(argument_error("not a digest job")),
    }
}

/// Digest of a small binary on the calling (normal) scheduler.
#[rustler::nif]
fn digest_small<'a>(env: Env<'a>, algorithm: Atom, data: Binary<'a>) -> NifResult<Term<'a>> {
    let algorithm = decode_algorithm(algorithm)?;
    if data.len() > SMALL_DIGEST_MAX {
        return Err(argument_error(format!(
            "digest_small accepts at most {SMALL_DIGEST_MAX} bytes, got {}",
            data.len()
        )));
    }
    let digest = digest::digest(algorithm, &data);
    // A NIF call counts as one reduction however long it runs: report the time used (1% of a
    // ~1 ms timeslice per 2 KiB, conservative for SHA-256 without SHA extensions; 64% at the
    // maximum) so a process hashing many small inputs in a loop still yields its scheduler.
    let percent = data.len().div_ceil(2048).clamp(1, 100) as i32;
    rustler::schedule::consume_timeslice(env, percent);
    Ok(bytes_term(env, &digest))
}

/// `{active, peak}`: native steps and hashes running right now, and the most seen at once
/// since the last reset (`reset: true` sets the peak to the current value).
#[rustler::nif]
fn compute_native_load(env: Env<'_>, reset: bool) -> (usize, usize) {
    account(env);
    let active = ACTIVE.load(Ordering::Acquire);
    let peak = if reset {
        PEAK.swap(active, Ordering::AcqRel)
    } else {
        PEAK.load(Ordering::Acquire)
    };
    (active, peak)
}

pub fn bytes_term<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, bytes.len());
    bin.as_mut_slice().copy_from_slice(bytes);
    bin.into()
}
