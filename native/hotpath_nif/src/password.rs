//! argon2 password hashing NIFs (`Hotpath.Password`). Hash and verify run on dirty CPU
//! schedulers (tens of milliseconds at the default costs); reading a PHC string's parameters
//! is microseconds and stays on the calling scheduler.

use crate::compute::{bytes_term, ActiveGuard};
use crate::error::{argument_error, guard, lift, NifResult};
use hotpath_core::password::{self, HashParams, Limits, Variant};
use rustler::{Atom, Binary, Encoder, Env, NifMap, Term};

mod atoms {
    rustler::atoms! { argon2id, argon2i, argon2d }
}

/// Longest PHC string accepted (a real one is about 100 bytes).
const MAX_PHC_LEN: usize = 1024;

fn phc_str<'a>(phc: &'a Binary<'_>) -> hotpath_core::Result<&'a str> {
    if phc.len() > MAX_PHC_LEN {
        return Err(hotpath_core::Error::malformed(format!(
            "a PHC string is at most {MAX_PHC_LEN} bytes, got {}",
            phc.len()
        )));
    }
    std::str::from_utf8(phc.as_slice())
        .map_err(|_| hotpath_core::Error::malformed("the PHC string is not UTF-8"))
}

/// `$argon2id$v=19$...` for `password` with the given salt and costs.
#[rustler::nif(schedule = "DirtyCpu")]
fn password_hash<'a>(
    env: Env<'a>,
    password: Binary<'a>,
    salt: Binary<'a>,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    hash_len: usize,
) -> NifResult<String> {
    let params = HashParams {
        m_cost,
        t_cost,
        p_cost,
        hash_len,
    };
    guard(|| {
        let _active = ActiveGuard::enter(env);
        lift(password::hash_phc(&password, &salt, &params))
    })
}

/// `true`/`false`, or `{:error, {:malformed | :incompatible, message}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn password_verify<'a>(
    env: Env<'a>,
    password: Binary<'a>,
    phc: Binary<'a>,
    max_m_cost: u32,
    max_t_cost: u32,
    max_p_cost: u32,
) -> NifResult<bool> {
    let limits = Limits {
        max_m_cost,
        max_t_cost,
        max_p_cost,
    };
    guard(|| {
        let _active = ActiveGuard::enter(env);
        lift(phc_str(&phc).and_then(|phc| password::verify_phc(&password, phc, &limits)))
    })
}

#[derive(NifMap)]
struct PhcInfo {
    algorithm: Atom,
    version: u32,
    m_cost: u32,
    t_cost: u32,
    parallelism: u32,
    salt_len: usize,
    hash_len: usize,
}

fn variant_atom(v: Variant) -> Atom {
    match v {
        Variant::Argon2id => atoms::argon2id(),
        Variant::Argon2i => atoms::argon2i(),
        Variant::Argon2d => atoms::argon2d(),
    }
}

/// The parameters of a PHC string, or `{:error, {:malformed | :incompatible, message}}`.
#[rustler::nif]
fn password_info<'a>(env: Env<'a>, phc: Binary<'a>) -> NifResult<PhcInfo> {
    // At most 1024 bytes parsed in one pass: a few µs.
    crate::compute::account(env);
    guard(|| {
        let info = lift(phc_str(&phc).and_then(password::inspect))?;
        Ok(PhcInfo {
            algorithm: variant_atom(info.variant),
            version: info.version,
            m_cost: info.m_cost,
            t_cost: info.t_cost,
            parallelism: info.p_cost,
            salt_len: info.salt_len,
            hash_len: info.hash_len,
        })
    })
}

/// The raw argon2 function. `costs` is `{variant, version, m_cost, t_cost, p_cost, hash_len}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn password_raw<'a>(
    env: Env<'a>,
    password: Binary<'a>,
    salt: Binary<'a>,
    secret: Binary<'a>,
    data: Binary<'a>,
    costs: (Atom, u32, u32, u32, u32, usize),
) -> NifResult<Term<'a>> {
    let (variant, version, m_cost, t_cost, p_cost, hash_len) = costs;
    let variant = if variant == atoms::argon2id() {
        Variant::Argon2id
    } else if variant == atoms::argon2i() {
        Variant::Argon2i
    } else if variant == atoms::argon2d() {
        Variant::Argon2d
    } else {
        return Err(argument_error(
            "unknown argon2 variant; valid variants: :argon2id, :argon2i, :argon2d",
        ));
    };
    let params = HashParams {
        m_cost,
        t_cost,
        p_cost,
        hash_len,
    };
    guard(|| {
        let _active = ActiveGuard::enter(env);
        let out = lift(password::raw(
            variant, version, &password, &salt, &secret, &data, &params,
        ))?;
        Ok(bytes_term(env, &out).encode(env))
    })
}
