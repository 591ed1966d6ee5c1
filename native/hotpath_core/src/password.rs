//! argon2 password hashing with standard PHC strings (RustCrypto `argon2`).
//!
//! * [`hash_phc`] hashes with argon2id, version 0x13, and returns
//!   `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>` (unpadded standard base64),
//!   the format of the reference implementation, argon2-cffi, argon2_elixir and libsodium.
//! * [`verify_phc`] accepts PHC strings of argon2id, argon2i and argon2d, versions 0x13 and
//!   0x10, and compares in constant time. Its cost parameters come from the (possibly hostile)
//!   string, so they are checked against [`Limits`] before any memory is allocated.
//! * Memory is reserved fallibly: an allocation failure is an error, never an abort. Each
//!   thread keeps its argon2 memory (up to 64 MiB) for its next hash and wipes it after every
//!   hash: on long-lived dirty schedulers this avoids mapping and faulting in 19 MiB per hash.
//!
//! One hash is one call: argon2's passes cannot be suspended, so a hash is not cancellable
//! once started (with the OWASP defaults it takes tens of milliseconds).

use crate::{Error, Result};
use argon2::{Algorithm, Argon2, AssociatedData, Block, Params, ParamsBuilder, Version};
use base64ct::{Base64Unpadded, Encoding};
use subtle::ConstantTimeEq;

/// OWASP Password Storage Cheat Sheet (2025): argon2id with 19 MiB, 2 passes, 1 lane.
pub const DEFAULT_M_COST: u32 = 19_456;
/// See [`DEFAULT_M_COST`].
pub const DEFAULT_T_COST: u32 = 2;
/// See [`DEFAULT_M_COST`].
pub const DEFAULT_P_COST: u32 = 1;
/// Hash length of new hashes, in bytes (the reference implementation's default).
pub const DEFAULT_HASH_LEN: usize = 32;
/// Salt length of new hashes, in bytes (RFC 9106 recommends 16).
pub const DEFAULT_SALT_LEN: usize = 16;

/// Largest `m_cost` of a new hash, in KiB (256 MiB). With [`MAX_T_COST`], one hash costs at
/// most 2 GiB of memory passes: about 2 s on a 2020s server core, a few seconds on a slow one.
/// argon2 cannot be interrupted, so these caps bound how long one call holds a dirty scheduler.
pub const MAX_M_COST: u32 = 262_144;
/// Largest `t_cost` of a new hash. See [`MAX_M_COST`].
pub const MAX_T_COST: u32 = 8;
/// Largest `p_cost` of a new hash (lanes run one after the other: they cost memory, not time).
pub const MAX_P_COST: u32 = 64;

/// Hard upper bounds of the [`Limits`] a caller may ask [`verify_phc`] to accept (1 GiB,
/// 16 passes, 255 lanes: libsodium's "sensitive" profile fits). At these bounds one
/// verification takes up to about 20 s; the defaults stay at the caps of new hashes.
pub const LIMIT_M_COST: u32 = 1_048_576;
/// See [`LIMIT_M_COST`].
pub const LIMIT_T_COST: u32 = 16;
/// See [`LIMIT_M_COST`].
pub const LIMIT_P_COST: u32 = 255;

/// Longest salt a PHC string may carry, in bytes.
pub const MAX_SALT_LEN: usize = 48;
/// Longest hash a PHC string may carry, in bytes.
pub const MAX_HASH_LEN: usize = 64;

/// The argon2 variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Data-dependent addressing.
    Argon2d,
    /// Data-independent addressing.
    Argon2i,
    /// Hybrid (the recommended variant).
    Argon2id,
}

impl Variant {
    fn algorithm(self) -> Algorithm {
        match self {
            Variant::Argon2d => Algorithm::Argon2d,
            Variant::Argon2i => Algorithm::Argon2i,
            Variant::Argon2id => Algorithm::Argon2id,
        }
    }

    /// The PHC identifier (`argon2id`, ...).
    pub fn ident(self) -> &'static str {
        match self {
            Variant::Argon2d => "argon2d",
            Variant::Argon2i => "argon2i",
            Variant::Argon2id => "argon2id",
        }
    }

    /// Parses a PHC identifier.
    pub fn from_ident(ident: &str) -> Option<Self> {
        match ident {
            "argon2d" => Some(Variant::Argon2d),
            "argon2i" => Some(Variant::Argon2i),
            "argon2id" => Some(Variant::Argon2id),
            _ => None,
        }
    }
}

/// Cost parameters of a new hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (at least 8 × `p_cost`).
    pub m_cost: u32,
    /// Passes over the memory (at least 1).
    pub t_cost: u32,
    /// Lanes (at least 1). Lanes are computed one after the other: Hotpath runs each hash on
    /// one dirty scheduler and never starts threads.
    pub p_cost: u32,
    /// Hash length in bytes, 16 to 64.
    pub hash_len: usize,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams {
            m_cost: DEFAULT_M_COST,
            t_cost: DEFAULT_T_COST,
            p_cost: DEFAULT_P_COST,
            hash_len: DEFAULT_HASH_LEN,
        }
    }
}

/// Upper bounds on the costs a PHC string may ask [`verify_phc`] for.
///
/// A stored hash decides how much memory and time verifying it takes; without bounds a
/// tampered or foreign hash (`m=4194304`) could ask for 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `m` (KiB).
    pub max_m_cost: u32,
    /// Largest accepted `t`.
    pub max_t_cost: u32,
    /// Largest accepted `p`.
    pub max_p_cost: u32,
}

impl Default for Limits {
    /// The caps of new hashes ([`MAX_M_COST`], [`MAX_T_COST`], [`MAX_P_COST`]): 256 MiB,
    /// 8 passes, 64 lanes, so every hash [`hash_phc`] can make verifies, and so do the common
    /// profiles (OWASP, RFC 9106's low-memory profile, argon2-cffi, argon2_elixir, libsodium's
    /// interactive and moderate). At most about 2 s per verification on a 2020s core.
    fn default() -> Self {
        Limits {
            max_m_cost: MAX_M_COST,
            max_t_cost: MAX_T_COST,
            max_p_cost: MAX_P_COST,
        }
    }
}

impl Limits {
    /// Checks that the limits are within [`LIMIT_M_COST`], [`LIMIT_T_COST`], [`LIMIT_P_COST`].
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{name} must be 1 to {max}, got {value}"
                )))
            }
        };
        check("max_m_cost", self.max_m_cost, LIMIT_M_COST)?;
        check("max_t_cost", self.max_t_cost, LIMIT_T_COST)?;
        check("max_p_cost", self.max_p_cost, LIMIT_P_COST)
    }
}

/// Checks the costs of a new hash against [`MAX_M_COST`], [`MAX_T_COST`], [`MAX_P_COST`].
fn check_costs(params: &HashParams) -> Result<()> {
    let check = |name: &str, value: u32, min: u32, max: u32| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{name} must be {min} to {max}, got {value}"
            )))
        }
    };
    check("t_cost", params.t_cost, 1, MAX_T_COST)?;
    check("p_cost", params.p_cost, 1, MAX_P_COST)?;
    check("m_cost", params.m_cost, 8, MAX_M_COST)?;
    if u64::from(params.m_cost) < 8 * u64::from(params.p_cost) {
        return Err(Error::invalid(param_message(
            argon2::Error::MemoryTooLittle,
            params.m_cost,
            params.p_cost,
        )));
    }
    Ok(())
}

/// The parameters a PHC string declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhcInfo {
    /// The variant.
    pub variant: Variant,
    /// `0x13` or `0x10`.
    pub version: u32,
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// Salt length in bytes.
    pub salt_len: usize,
    /// Hash length in bytes.
    pub hash_len: usize,
}

/// Hashes `password` with argon2id v0x13 and returns its PHC string.
///
/// `salt` must be 8 to 48 bytes of fresh randomness (16 recommended). Invalid parameters are
/// [`Error::InvalidArgument`].
///
/// ```
/// use hotpath_core::password::{hash_phc, verify_phc, HashParams, Limits};
/// let params = HashParams { m_cost: 64, t_cost: 1, p_cost: 1, hash_len: 32 };
/// let phc = hash_phc(b"hunter2", b"0123456789abcdef", &params).unwrap();
/// assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$"));
/// assert_eq!(verify_phc(b"hunter2", &phc, &Limits::default()), Ok(true));
/// ```
pub fn hash_phc(password: &[u8], salt: &[u8], params: &HashParams) -> Result<String> {
    if !(8..=48).contains(&salt.len()) {
        return Err(Error::invalid(format!(
            "salt must be 8 to 48 bytes, got {}",
            salt.len()
        )));
    }
    if !(16..=64).contains(&params.hash_len) {
        return Err(Error::invalid(format!(
            "hash_len must be 16 to 64 bytes, got {}",
            params.hash_len
        )));
    }
    check_costs(params)?;
    let argon_params = Params::new(
        params.m_cost,
        params.t_cost,
        params.p_cost,
        Some(params.hash_len),
    )
    .map_err(|e| Error::invalid(param_message(e, params.m_cost, params.p_cost)))?;
    let ctx = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut out = [0u8; 64];
    let out = &mut out[..params.hash_len];
    run(&ctx, password, salt, out).map_err(Error::invalid)?;

    let mut salt_b64 = [0u8; 64];
    let mut hash_b64 = [0u8; 88];
    let salt_b64 = Base64Unpadded::encode(salt, &mut salt_b64).map_err(Error::invalid)?;
    let hash_b64 = Base64Unpadded::encode(out, &mut hash_b64).map_err(Error::invalid)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${salt_b64}${hash_b64}",
        params.m_cost, params.t_cost, params.p_cost
    ))
}

/// Verifies `password` against a PHC string, comparing hashes in constant time.
///
/// `Ok(true)`/`Ok(false)` for a well-formed string within `limits`;
/// [`Error::Malformed`] for a string that is not a valid argon2 PHC string;
/// [`Error::Incompatible`] for another algorithm (bcrypt, pbkdf2, ...) or costs above `limits`.
pub fn verify_phc(password: &[u8], phc: &str, limits: &Limits) -> Result<bool> {
    limits.validate()?;
    let parsed = parse(phc)?;
    check_limits(&parsed.info, limits)?;
    let expected = &parsed.hash[..parsed.info.hash_len];
    let ctx = Argon2::new(
        parsed.info.variant.algorithm(),
        version(parsed.info.version)?,
        parsed.params,
    );
    let mut out = [0u8; 64];
    let out = &mut out[..expected.len()];
    run(&ctx, password, &parsed.salt[..parsed.info.salt_len], out).map_err(Error::malformed)?;
    Ok(bool::from(out.ct_eq(expected)))
}

/// The parameters a PHC string declares, without hashing anything.
pub fn inspect(phc: &str) -> Result<PhcInfo> {
    parse(phc).map(|p| p.info)
}

/// The raw argon2 function (RFC 9106, section 3), with optional secret and associated data.
///
/// `version` is `0x13` or `0x10`. Used for the RFC's test vectors and as a key-derivation
/// primitive; password storage should use [`hash_phc`].
#[allow(clippy::too_many_arguments)]
pub fn raw(
    variant: Variant,
    version_number: u32,
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    associated_data: &[u8],
    params: &HashParams,
) -> Result<Vec<u8>> {
    if !(4..=1024).contains(&params.hash_len) {
        return Err(Error::invalid(format!(
            "hash_len must be 4 to 1024 bytes, got {}",
            params.hash_len
        )));
    }
    if salt.len() < 8 {
        return Err(Error::invalid(format!(
            "salt must be at least 8 bytes, got {}",
            salt.len()
        )));
    }
    check_costs(params)?;
    let data = AssociatedData::new(associated_data).map_err(Error::invalid)?;
    let argon_params = ParamsBuilder::new()
        .m_cost(params.m_cost)
        .t_cost(params.t_cost)
        .p_cost(params.p_cost)
        .output_len(params.hash_len)
        .data(data)
        .build()
        .map_err(|e| Error::invalid(param_message(e, params.m_cost, params.p_cost)))?;
    let version = version(version_number).map_err(|_| {
        Error::invalid(format!(
            "version must be 0x13 (19) or 0x10 (16), got {version_number}"
        ))
    })?;
    let ctx = if secret.is_empty() {
        Argon2::new(variant.algorithm(), version, argon_params)
    } else {
        Argon2::new_with_secret(secret, variant.algorithm(), version, argon_params)
            .map_err(Error::invalid)?
    };
    let mut out = vec![0u8; params.hash_len];
    run(&ctx, password, salt, &mut out).map_err(Error::invalid)?;
    Ok(out)
}

struct Parsed {
    info: PhcInfo,
    params: Params,
    salt: [u8; MAX_SALT_LEN],
    hash: [u8; MAX_HASH_LEN],
}

/// Parses an argon2 PHC string as strictly as the reference implementation's decoder (which
/// argon2-cffi, argon2_elixir and libsodium use):
///
/// `$<argon2id|argon2i|argon2d>[$v=<16|19>]$m=<m>,t=<t>,p=<p>$<salt>$<hash>`
///
/// * the parameters are exactly `m`, `t`, `p`, once each, in this order (no `keyid`/`data`:
///   Hotpath has no secret to combine them with);
/// * numbers are decimal without sign or leading zero (PHC string format spec), at most
///   `u32::MAX`;
/// * salt and hash are canonical unpadded standard base64 (no `=`, zero unused bits), salt
///   8 to [`MAX_SALT_LEN`] bytes, hash 4 to [`MAX_HASH_LEN`] bytes;
/// * `t >= 1`, `1 <= p <= 2^24 - 1`, `m >= 8 * p`; nothing may follow the hash.
///
/// Work is linear in the string's length, and nothing is allocated.
fn parse(phc: &str) -> Result<Parsed> {
    let rest = phc
        .strip_prefix('$')
        .ok_or_else(|| Error::malformed("not a PHC string: it must start with '$'"))?;
    let mut fields = rest.split('$');
    let ident = fields.next().unwrap_or_default();
    let valid_ident = !ident.is_empty()
        && ident.len() <= 32
        && ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_ident {
        return Err(Error::malformed(
            "not a PHC string: the function name must be 1 to 32 characters of [a-z0-9-]",
        ));
    }
    let variant = Variant::from_ident(ident).ok_or_else(|| {
        Error::incompatible(format!(
            "unsupported algorithm {ident:?}; supported: argon2id, argon2i, argon2d"
        ))
    })?;
    let missing = |what: &str| Error::malformed(format!("the PHC string has no {what}"));
    let mut field = fields.next().ok_or_else(|| missing("parameters"))?;
    let version = match field.strip_prefix("v=") {
        Some(v) => {
            let v = decimal("v", v)?;
            field = fields.next().ok_or_else(|| missing("parameters"))?;
            v
        }
        None => 0x10,
    };
    if version != 0x13 && version != 0x10 {
        return Err(Error::malformed(format!(
            "unknown argon2 version {version} (valid: 19, 16)"
        )));
    }
    let [m_cost, t_cost, p_cost] = cost_params(field)?;
    let salt_field = fields.next().ok_or_else(|| missing("salt"))?;
    let hash_field = fields.next().ok_or_else(|| missing("hash"))?;
    if fields.next().is_some() {
        return Err(Error::malformed("the PHC string has fields after the hash"));
    }
    let mut salt = [0u8; MAX_SALT_LEN];
    let salt_len = base64_field("salt", salt_field, 8, &mut salt)?;
    let mut hash = [0u8; MAX_HASH_LEN];
    let hash_len = base64_field("hash", hash_field, 4, &mut hash)?;
    if t_cost < 1 {
        return Err(Error::malformed("t must be at least 1"));
    }
    if !(1..=Params::MAX_P_COST).contains(&p_cost) {
        return Err(Error::malformed(format!(
            "p must be 1 to {}, got {p_cost}",
            Params::MAX_P_COST
        )));
    }
    if u64::from(m_cost) < 8 * u64::from(p_cost) {
        return Err(Error::malformed(format!(
            "m must be at least 8 KiB per lane (8 * p = {}), got {m_cost}",
            8 * u64::from(p_cost)
        )));
    }
    let params = Params::new(m_cost, t_cost, p_cost, Some(hash_len))
        .map_err(|e| Error::malformed(format!("bad argon2 parameters: {e}")))?;
    Ok(Parsed {
        info: PhcInfo {
            variant,
            version,
            m_cost,
            t_cost,
            p_cost,
            salt_len,
            hash_len,
        },
        params,
        salt,
        hash,
    })
}

/// `m=<m>,t=<t>,p=<p>`, exactly.
fn cost_params(field: &str) -> Result<[u32; 3]> {
    const NAMES: [&str; 3] = ["m", "t", "p"];
    let mut values = [0u32; 3];
    let mut seen = [false; 3];
    let mut count = 0;
    for (i, pair) in field.split(',').enumerate() {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::malformed(format!("parameter {pair:?} is not name=value")))?;
        let Some(slot) = NAMES.iter().position(|n| *n == name) else {
            return Err(if matches!(name, "keyid" | "data") {
                Error::incompatible(format!("argon2 parameter {name} is not supported"))
            } else {
                Error::malformed(format!(
                    "unknown argon2 parameter {name:?} (valid: m, t, p)"
                ))
            });
        };
        if seen[slot] {
            return Err(Error::malformed(format!("parameter {name} appears twice")));
        }
        if slot != i {
            return Err(Error::malformed(
                "the parameters must be m, t, p in this order",
            ));
        }
        seen[slot] = true;
        values[slot] = decimal(name, value)?;
        count += 1;
    }
    if count != 3 {
        return Err(Error::malformed("the parameters must be m, t and p"));
    }
    Ok(values)
}

/// A decimal `u32` as the PHC string format spec writes it: digits only, no leading zero.
fn decimal(name: &str, s: &str) -> Result<u32> {
    let canonical = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    let value = if canonical {
        s.parse::<u32>().ok()
    } else {
        None
    };
    value.ok_or_else(|| {
        let shown: String = s.chars().take(24).collect();
        Error::malformed(format!(
            "{name} must be a decimal integer up to 4294967295 without sign or leading zeros, got {shown:?}"
        ))
    })
}

/// Decodes canonical unpadded base64 of `min..=out.len()` bytes into `out`.
fn base64_field(name: &str, s: &str, min: usize, out: &mut [u8]) -> Result<usize> {
    let max = out.len();
    // Bytes encoded by `s` (a length of 1 modulo 4 is invalid and fails below).
    let len = s.len() / 4 * 3 + (s.len() % 4).saturating_sub(1);
    if len > max {
        return Err(Error::incompatible(format!(
            "{name} of {len} bytes; at most {max} are supported"
        )));
    }
    let decoded = Base64Unpadded::decode(s, out)
        .map_err(|_| Error::malformed(format!("{name} is not canonical unpadded base64")))?;
    if decoded.len() < min {
        return Err(Error::malformed(format!(
            "{name} must be at least {min} bytes, got {}",
            decoded.len()
        )));
    }
    Ok(decoded.len())
}

fn check_limits(info: &PhcInfo, limits: &Limits) -> Result<()> {
    let over = |name: &str, value: u32, max: u32| {
        Error::incompatible(format!(
            "{name}={value} is above the verification limit of {max}"
        ))
    };
    if info.m_cost > limits.max_m_cost {
        return Err(over("m", info.m_cost, limits.max_m_cost));
    }
    if info.t_cost > limits.max_t_cost {
        return Err(over("t", info.t_cost, limits.max_t_cost));
    }
    if info.p_cost > limits.max_p_cost {
        return Err(over("p", info.p_cost, limits.max_p_cost));
    }
    Ok(())
}

fn version(number: u32) -> Result<Version> {
    match number {
        0x13 => Ok(Version::V0x13),
        0x10 => Ok(Version::V0x10),
        other => Err(Error::malformed(format!("unknown argon2 version {other}"))),
    }
}

/// Largest argon2 memory (in 1 KiB blocks) a thread keeps between hashes: 64 MiB.
const CACHED_BLOCKS_MAX: usize = 64 * 1024;

thread_local! {
    /// argon2 memory kept by this thread between hashes. Dirty schedulers are long-lived
    /// threads, so each reuses one buffer instead of mapping, zeroing and faulting in fresh
    /// memory (19 MiB at the default cost) for every hash. argon2 writes every block before
    /// reading it, so stale contents never influence a result; the buffer is wiped after each
    /// hash so no password-derived state lingers.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs argon2 with memory reserved fallibly (an infallible `vec!` would abort the VM when
/// the allocation fails).
fn run(ctx: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    #[cfg(test)]
    tests::HASHES_RUN.with(|n| n.set(n.get() + 1));
    let blocks = ctx_block_count(ctx);
    MEMORY.with(|cell| {
        // A re-entrant call (none exists today) would find the cell borrowed: use a fresh
        // buffer rather than panic.
        let mut fresh = Vec::new();
        let mut cached = cell.try_borrow_mut();
        let memory = match cached.as_deref_mut() {
            Ok(memory) if blocks <= CACHED_BLOCKS_MAX => memory,
            _ => &mut fresh,
        };
        if memory.len() < blocks {
            memory.clear();
            memory
                .try_reserve_exact(blocks)
                .map_err(|_| format!("cannot allocate {blocks} KiB for argon2"))?;
            memory.resize(blocks, Block::default());
        }
        let result = ctx
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|e| e.to_string());
        wipe(&mut memory[..blocks]);
        result
    })
}

/// Overwrites argon2 memory with zeros in a way the optimiser keeps.
fn wipe(memory: &mut [Block]) {
    for block in memory.iter_mut() {
        *block = Block::default();
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    std::hint::black_box(memory);
}

fn ctx_block_count(ctx: &Argon2<'_>) -> usize {
    ctx.params().block_count()
}

fn param_message(e: argon2::Error, m_cost: u32, p_cost: u32) -> String {
    match e {
        argon2::Error::MemoryTooLittle => format!(
            "m_cost must be at least 8 KiB per lane (8 × p_cost = {}), got {m_cost}",
            8u64 * u64::from(p_cost)
        ),
        argon2::Error::TimeTooSmall => "t_cost must be at least 1".to_string(),
        argon2::Error::ThreadsTooFew => "p_cost must be at least 1".to_string(),
        argon2::Error::ThreadsTooMany => "p_cost is too large".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    thread_local! {
        /// argon2 runs on this thread (counted by `run`): proves refusals cost no hashing.
        pub(super) static HASHES_RUN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn hashes_run() -> u64 {
        HASHES_RUN.with(|n| n.get())
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn small() -> HashParams {
        HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
            hash_len: 32,
        }
    }

    fn rfc(variant: Variant) -> String {
        let params = HashParams {
            m_cost: 32,
            t_cost: 3,
            p_cost: 4,
            hash_len: 32,
        };
        hex(&raw(
            variant, 0x13, &[1u8; 32], &[2u8; 16], &[3u8; 8], &[4u8; 12], &params,
        )
        .unwrap())
    }

    /// RFC 9106, sections 5.1 to 5.3.
    #[test]
    fn rfc9106_test_vectors() {
        assert_eq!(
            rfc(Variant::Argon2d),
            "512b391b6f1162975371d30919734294f868e3be3984f3c1a13a4db9fabe4acb"
        );
        assert_eq!(
            rfc(Variant::Argon2i),
            "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8"
        );
        assert_eq!(
            rfc(Variant::Argon2id),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let phc = hash_phc(b"correct horse", b"saltsaltsaltsalt", &small()).unwrap();
        assert_eq!(
            verify_phc(b"correct horse", &phc, &Limits::default()),
            Ok(true)
        );
        assert_eq!(
            verify_phc(b"correct hors", &phc, &Limits::default()),
            Ok(false)
        );
        assert_eq!(verify_phc(b"", &phc, &Limits::default()), Ok(false));
    }

    /// PHC strings made by other implementations of the reference algorithm.
    const FOREIGN: &[(&[u8], &str)] = &[
        // argon2-cffi 25.1 (the reference C implementation), `argon2.low_level.hash_secret`.
        (b"password", "$argon2id$v=19$m=1024,t=2,p=2$c29tZXNhbHRzb21lc2FsdA$E2UjtrDTCgIx4mfpqQ9GwLzvabuQuVCcwisqBRbSI+4"),
        (b"password", "$argon2i$v=19$m=256,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$ju7us0XNrHIy622jJrn8w1hFqEZ3/88FzQdz3ZrcA1k"),
        (b"password", "$argon2d$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$kLegNXUNLJtG8FYWSLc+bQ"),
        ("p\u{e4}ssw\u{f6}rd".as_bytes(), "$argon2id$v=19$m=128,t=1,p=4$MDEyMzQ1Njc4OQ$wL5pAOw7gzc9A7+6wIvOdZqqyCnDzavVQ+41b0QYHhxf2y7gztHmIfH0HnTURyM+Uwz3MSjq76QjBPcweP62DQ"),
        (b"password", "$argon2id$v=16$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$jB3OyWpCB2x/DpMHb1fgr/ngOhjBHtKr829Vaw65r9Y"),
        (b"", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4"),
        // argon2_elixir's reference tests (riverrun/argon2_elixir test/reference_test.exs).
        (b"password", "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8"),
        (b"password", "$argon2i$v=19$m=256,t=2,p=2$c29tZXNhbHQ$T/XOJ2mh1/TIpJHfCdQan76Q5esCFVoT5MAeIM1Oq2E"),
        // Version 0x10: no `v=` field.
        (b"password", "$argon2i$m=256,t=2,p=1$c29tZXNhbHQ$/U3YPXYsSb3q9XxHvc0MLxur+GP960kN9j7emXX8zwY"),
    ];

    #[test]
    fn verifies_hashes_of_other_implementations() {
        for (password, phc) in FOREIGN {
            assert_eq!(
                verify_phc(password, phc, &Limits::default()),
                Ok(true),
                "{phc}"
            );
            assert_eq!(
                verify_phc(b"wrong", phc, &Limits::default()),
                Ok(false),
                "{phc}"
            );
        }
    }

    /// Our encoding is byte-identical to the reference implementation's for the same inputs:
    /// `hash_secret(b"password", b"somesaltsomesalt", time_cost=2, memory_cost=1024,
    /// parallelism=2, hash_len=32, type=Type.ID)` from argon2-cffi.
    #[test]
    fn encodes_like_the_reference_implementation() {
        let params = HashParams {
            m_cost: 1024,
            t_cost: 2,
            p_cost: 2,
            hash_len: 32,
        };
        assert_eq!(
            hash_phc(b"password", b"somesaltsomesalt", &params).unwrap(),
            FOREIGN[0].1
        );
    }

    /// The per-thread memory is reused across hashes of different sizes without changing
    /// any result.
    #[test]
    fn reused_memory_does_not_change_results() {
        let first = hash_phc(b"pw", b"saltsaltsaltsalt", &small()).unwrap();
        let bigger = HashParams {
            m_cost: 2048,
            ..small()
        };
        hash_phc(b"other", b"saltsaltsaltsalt", &bigger).unwrap();
        assert_eq!(
            hash_phc(b"pw", b"saltsaltsaltsalt", &small()).unwrap(),
            first
        );
        for (password, phc) in FOREIGN {
            assert_eq!(verify_phc(password, phc, &Limits::default()), Ok(true));
        }
    }

    #[test]
    fn default_params_follow_owasp() {
        let p = HashParams::default();
        assert_eq!(
            (p.m_cost, p.t_cost, p.p_cost, p.hash_len),
            (19_456, 2, 1, 32)
        );
    }

    #[test]
    fn inspect_reads_the_parameters() {
        let phc = hash_phc(b"pw", b"saltsaltsaltsalt", &small()).unwrap();
        let info = inspect(&phc).unwrap();
        assert_eq!(
            info,
            PhcInfo {
                variant: Variant::Argon2id,
                version: 0x13,
                m_cost: 64,
                t_cost: 1,
                p_cost: 1,
                salt_len: 16,
                hash_len: 32
            }
        );
    }

    #[test]
    fn malformed_strings_are_errors_not_panics() {
        let good = hash_phc(b"pw", b"saltsaltsaltsalt", &small()).unwrap();
        let cases = [
            String::new(),
            "$".into(),
            "$$$$".into(),
            "argon2id".into(),
            "$argon2id".into(),
            "$argon2id$v=19".into(),
            "$argon2id$v=19$m=64,t=1,p=1".into(),
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ".into(),
            "$argon2id$v=19$m=64,t=1,p=1$!!!$AAAA".into(),
            "$argon2id$v=20$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "$argon2id$v=19$m=x,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            format!("{good}$extra"),
            good.replace("m=64", "m=99999999999999999999"),
            "\u{0}\u{ffff}".into(),
        ];
        for bad in &cases {
            match verify_phc(b"pw", bad, &Limits::default()) {
                Err(Error::Malformed(_)) | Err(Error::Incompatible(_)) | Ok(false) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn other_algorithms_are_incompatible() {
        for other in [
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$pbkdf2-sha512$160000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let err = verify_phc(b"pw", other, &Limits::default()).unwrap_err();
            assert!(
                matches!(err, Error::Incompatible(_) | Error::Malformed(_)),
                "{other}: {err:?}"
            );
        }
    }

    #[test]
    fn costs_above_the_limits_are_refused_before_allocating() {
        let phc = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let err = verify_phc(b"pw", phc, &Limits::default()).unwrap_err();
        assert_eq!(
            err,
            Error::incompatible("m=4194304 is above the verification limit of 262144")
        );
        let phc = "$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(matches!(
            verify_phc(b"pw", phc, &Limits::default()),
            Err(Error::Incompatible(_))
        ));
    }

    #[test]
    fn bad_hash_params_are_argument_errors() {
        let salt = b"saltsaltsaltsalt";
        for params in [
            HashParams {
                m_cost: 7,
                ..small()
            },
            HashParams {
                t_cost: 0,
                ..small()
            },
            HashParams {
                p_cost: 0,
                ..small()
            },
            HashParams {
                m_cost: 8,
                p_cost: 2,
                ..small()
            },
            HashParams {
                hash_len: 15,
                ..small()
            },
            HashParams {
                hash_len: 65,
                ..small()
            },
        ] {
            let err = hash_phc(b"pw", salt, &params).unwrap_err();
            assert!(err.is_argument_error(), "{params:?}: {err:?}");
        }
        assert!(hash_phc(b"pw", b"short", &small())
            .unwrap_err()
            .is_argument_error());
        assert!(hash_phc(b"pw", &[0u8; 49], &small())
            .unwrap_err()
            .is_argument_error());
    }

    #[test]
    fn raw_rejects_bad_versions() {
        let err = raw(
            Variant::Argon2id,
            0x14,
            b"pw",
            b"saltsalt",
            b"",
            b"",
            &small(),
        )
        .unwrap_err();
        assert!(err.is_argument_error());
    }

    const SALT: &str = "c29tZXNhbHRzb21lc2FsdA";

    fn phc(params: &str) -> String {
        format!("$argon2id$v=19${params}${SALT}$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4")
    }

    /// What the reference decoder (argon2-cffi) refuses, we refuse.
    #[test]
    fn strict_like_the_reference_decoder() {
        let good = FOREIGN[5].1;
        assert_eq!(verify_phc(b"", good, &Limits::default()), Ok(true));
        let bad = [
            phc("m=64,m=64,t=1,p=1"),
            phc("m=64,t=1,t=1,p=1"),
            phc("m=64,t=1,p=1,p=1"),
            phc("t=1,m=64,p=1"),
            phc("m=64,p=1,t=1"),
            phc("m=64,t=1"),
            phc("m=64,t=1,p=1,"),
            phc(",m=64,t=1,p=1"),
            phc("m=064,t=1,p=1"),
            phc("m=+64,t=1,p=1"),
            phc("m=64 ,t=1,p=1"),
            phc("m=,t=1,p=1"),
            phc("m=64,t=1,p=1,x=1"),
            phc("m=4294967296,t=1,p=1"),
            phc("m=64,t=1,p=16777216"),
            phc("m=64,t=1,p=9"),
            good.replace("v=19", "v=019"),
            good.replace("v=19", "v=18"),
            good.replace("$argon2id$", "$Argon2id$"),
            good.replace(SALT, "c29tZXNhbHRzb21lc2FsdA=="),
            good.replace(SALT, "c29tZXNhbHRzb21lc2FsdB"),
            good.replace(SALT, "c29tZXNhbHRzb21lc2Fsd"),
            good.replace(SALT, "c29tZXNh bHRzb21lc2FsdA"),
            good.replace(SALT, "c29tZXNhbHRzb21lc2FsdA-_"),
            format!("{good}\n"),
            format!("{good}$"),
            format!(" {good}"),
            good.replace("$v=19$", "$v=19$$"),
        ];
        for phc in &bad {
            let before = hashes_run();
            let err = verify_phc(b"", phc, &Limits::default()).unwrap_err();
            assert!(!err.is_argument_error(), "{phc}: {err:?}");
            assert!(inspect(phc).is_err(), "{phc}");
            assert_eq!(hashes_run(), before, "{phc} was hashed");
        }
        for unsupported in [
            phc("m=64,t=1,p=1,keyid=AAAA"),
            phc("m=64,t=1,p=1,data=AAAA"),
        ] {
            assert!(matches!(
                verify_phc(b"", &unsupported, &Limits::default()),
                Err(Error::Incompatible(_))
            ));
        }
        assert_eq!(
            verify_phc(b"", &phc("m=64,m=64,t=1,p=1"), &Limits::default()),
            Err(Error::malformed("parameter m appears twice"))
        );
    }

    #[test]
    fn new_hashes_are_capped_and_every_capped_hash_verifies_by_default() {
        let salt = b"saltsaltsaltsalt";
        for params in [
            HashParams {
                t_cost: MAX_T_COST + 1,
                ..small()
            },
            HashParams {
                t_cost: u32::MAX,
                ..small()
            },
            HashParams {
                m_cost: MAX_M_COST + 1,
                ..small()
            },
            HashParams {
                m_cost: MAX_M_COST,
                p_cost: MAX_P_COST + 1,
                ..small()
            },
            HashParams {
                p_cost: u32::MAX,
                ..small()
            },
        ] {
            let before = hashes_run();
            let err = hash_phc(b"pw", salt, &params).unwrap_err();
            assert!(err.is_argument_error(), "{params:?}: {err:?}");
            assert!(raw(Variant::Argon2id, 0x13, b"pw", salt, b"", b"", &params)
                .unwrap_err()
                .is_argument_error());
            assert_eq!(hashes_run(), before);
        }
        let limits = Limits::default();
        assert_eq!(
            (limits.max_m_cost, limits.max_t_cost, limits.max_p_cost),
            (MAX_M_COST, MAX_T_COST, MAX_P_COST)
        );
        // The largest new hash is within the default limits (checked without hashing it).
        let largest = format!(
            "$argon2id$v=19$m={MAX_M_COST},t={MAX_T_COST},p={MAX_P_COST}${SALT}$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4"
        );
        let info = inspect(&largest).unwrap();
        assert!(check_limits(&info, &limits).is_ok());
        let over = largest.replace(&format!("t={MAX_T_COST}"), &format!("t={}", MAX_T_COST + 1));
        assert!(matches!(
            verify_phc(b"", &over, &limits),
            Err(Error::Incompatible(_))
        ));
        // Presets: argon2-cffi / RFC 9106 low memory, argon2_elixir, libsodium moderate.
        for preset in ["m=65536,t=3,p=4", "m=262144,t=3,p=1", "m=19456,t=2,p=1"] {
            let info = inspect(&phc(preset)).unwrap();
            assert!(check_limits(&info, &limits).is_ok(), "{preset}");
        }
    }

    #[test]
    fn limits_themselves_are_bounded() {
        for limits in [
            Limits {
                max_t_cost: LIMIT_T_COST + 1,
                ..Limits::default()
            },
            Limits {
                max_m_cost: u32::MAX,
                ..Limits::default()
            },
            Limits {
                max_p_cost: 0,
                ..Limits::default()
            },
        ] {
            assert!(verify_phc(b"", FOREIGN[5].1, &limits)
                .unwrap_err()
                .is_argument_error());
        }
    }

    /// Small limits for the hostile property: a string within them hashes in well under a
    /// millisecond even in a debug build.
    const TINY: Limits = Limits {
        max_m_cost: 64,
        max_t_cost: 2,
        max_p_cost: 8,
    };

    #[derive(Debug, Clone)]
    enum Mutation {
        FlipBit(usize, u8),
        Truncate(usize),
        Insert(usize, char),
        Delete(usize),
        DuplicateParam(usize),
        SwapParams(usize, usize),
        HugeNumber(usize, String),
        Padding(bool),
        BadBase64(usize, char),
        VersionField(String),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let number = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just("4294967295".to_string()),
            Just("4294967296".to_string()),
            Just("99999999999999999999999999999999".to_string()),
            (65u64..100_000).prop_map(|n| n.to_string()),
            (0u64..10).prop_map(|n| format!("0{n}")),
            Just("-1".to_string()),
            Just("+1".to_string()),
            Just(String::new()),
        ];
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
            any::<usize>().prop_map(Mutation::Truncate),
            (
                any::<usize>(),
                prop::sample::select(vec!['$', ',', '=', 'A', '/', '+', '0', ' ', '\u{e9}', '\0'])
            )
                .prop_map(|(i, c)| Mutation::Insert(i, c)),
            any::<usize>().prop_map(Mutation::Delete),
            (0usize..3).prop_map(Mutation::DuplicateParam),
            (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapParams(a, b)),
            (0usize..3, number).prop_map(|(i, n)| Mutation::HugeNumber(i, n)),
            any::<bool>().prop_map(Mutation::Padding),
            (
                any::<usize>(),
                prop::sample::select(vec!['=', '-', '_', '.', '*', '\n'])
            )
                .prop_map(|(i, c)| Mutation::BadBase64(i, c)),
            prop::sample::select(vec!["v=16", "v=20", "v=019", "", "v=", "v=19$v=19"])
                .prop_map(|v| Mutation::VersionField(v.to_string())),
        ]
    }

    fn fields(s: &str) -> Vec<String> {
        s.split('$').map(str::to_string).collect()
    }

    fn apply(s: &str, m: &Mutation) -> Vec<u8> {
        let mut bytes = s.as_bytes().to_vec();
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::FlipBit(i, bit) => {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] ^= 1 << bit;
                }
                bytes
            }
            Mutation::Truncate(i) => {
                bytes.truncate(at(*i, bytes.len()));
                bytes
            }
            Mutation::Insert(i, c) => {
                let mut text = s.to_string();
                let mut i = at(*i, text.len());
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                text.insert(i, *c);
                text.into_bytes()
            }
            Mutation::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % bytes.len());
                }
                bytes
            }
            Mutation::DuplicateParam(k)
            | Mutation::SwapParams(k, _)
            | Mutation::HugeNumber(k, _) => {
                let mut f = fields(s);
                let Some(pos) = f.iter().position(|x| x.starts_with("m=")) else {
                    return bytes;
                };
                let mut params: Vec<String> = f[pos].split(',').map(str::to_string).collect();
                let k = k % params.len();
                match m {
                    Mutation::DuplicateParam(_) => {
                        let p = params[k].clone();
                        params.insert(k, p);
                    }
                    Mutation::SwapParams(_, j) => {
                        let j = j % params.len();
                        params.swap(k, j);
                    }
                    Mutation::HugeNumber(_, n) => {
                        let name = params[k].split('=').next().unwrap_or("m").to_string();
                        params[k] = format!("{name}={n}");
                    }
                    _ => {}
                }
                f[pos] = params.join(",");
                f.join("$").into_bytes()
            }
            Mutation::Padding(hash) => {
                let mut f = fields(s);
                let n = f.len();
                if n >= 2 {
                    let idx = if *hash { n - 1 } else { n - 2 };
                    f[idx].push_str("==");
                }
                f.join("$").into_bytes()
            }
            Mutation::BadBase64(i, c) => {
                let mut f = fields(s);
                if let Some(last) = f.last_mut() {
                    let mut j = at(*i, last.len());
                    while !last.is_char_boundary(j) {
                        j -= 1;
                    }
                    last.insert(j, *c);
                }
                f.join("$").into_bytes()
            }
            Mutation::VersionField(v) => {
                let mut f = fields(s);
                if f.len() > 2 && f[2].starts_with("v=") {
                    if v.is_empty() {
                        f.remove(2);
                    } else {
                        f[2] = v.clone();
                    }
                }
                f.join("$").into_bytes()
            }
        }
    }

    fn bases() -> Vec<(Vec<u8>, String)> {
        let mut out = vec![];
        for (m, t, p) in [(8, 1, 1), (16, 2, 2), (64, 1, 8)] {
            let params = HashParams {
                m_cost: m,
                t_cost: t,
                p_cost: p,
                hash_len: 16,
            };
            out.push((
                b"pw".to_vec(),
                hash_phc(b"pw", b"saltsaltsalt", &params).unwrap(),
            ));
        }
        out.push((b"password".to_vec(), FOREIGN[2].1.to_string()));
        // argon2i without a version field (0x10), made with the raw function.
        let params = HashParams {
            m_cost: 32,
            t_cost: 2,
            p_cost: 1,
            hash_len: 20,
        };
        let salt = b"0123456789";
        let out_bytes = raw(Variant::Argon2i, 0x10, b"pw", salt, b"", b"", &params).unwrap();
        out.push((
            b"pw".to_vec(),
            format!(
                "$argon2i$m=32,t=2,p=1${}${}",
                Base64Unpadded::encode_string(salt),
                Base64Unpadded::encode_string(&out_bytes)
            ),
        ));
        out
    }

    fn exceeds(info: &PhcInfo, limits: &Limits) -> bool {
        info.m_cost > limits.max_m_cost
            || info.t_cost > limits.max_t_cost
            || info.p_cost > limits.max_p_cost
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Mutated PHC strings are refused (without hashing) or verified correctly: `true`
        /// only for the unmodified string, never a panic, never a hash above the limits.
        #[test]
        fn hostile_phc_strings(base in 0usize..5, mutations in prop::collection::vec(mutation(), 1..4)) {
            let bases = bases();
            let (password, original) = &bases[base % bases.len()];
            let mut current = original.clone().into_bytes();
            for m in &mutations {
                let text = String::from_utf8_lossy(&current).into_owned();
                current = apply(&text, m);
            }
            // The NIF refuses bytes that are not UTF-8 before parsing.
            let Ok(text) = std::str::from_utf8(&current) else { return Ok(()); };
            let before = hashes_run();
            let result = verify_phc(password, text, &TINY);
            let hashed = hashes_run() - before;
            match inspect(text) {
                Err(e) => {
                    prop_assert_eq!(result, Err(e.clone()));
                    prop_assert!(!e.is_argument_error());
                    prop_assert_eq!(hashed, 0);
                }
                Ok(info) if exceeds(&info, &TINY) => {
                    prop_assert!(matches!(result, Err(Error::Incompatible(_))), "{:?}", result);
                    prop_assert_eq!(hashed, 0);
                }
                Ok(_) => {
                    prop_assert_eq!(result, Ok(text == original.as_str()), "{}", text);
                    prop_assert_eq!(hashed, 1);
                }
            }
        }
    }
}
