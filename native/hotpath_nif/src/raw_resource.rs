//! A resource type opened directly with `erl_nif`, for the types whose decode is on a hot path.
//!
//! rustler's `ResourceArc`/`Term::try_get_resource` find the resource type through a
//! `HashMap<TypeId, _>` (SipHash) on every decode, which costs about half an empty NIF call.
//! A [`RawResourceType`] keeps the `ErlNifResourceType*` in a static, so decoding is a single
//! `enif_get_resource` call.
//!
//! The resource object holds one `*mut T` produced by `Box::into_raw`; the destructor turns it
//! back into the `Box` and drops it. The pointer slot is read and written unaligned, so no
//! assumption is made about the alignment of the memory `enif_alloc_resource` returns.

use rustler::sys::{
    c_void, enif_alloc_resource, enif_get_resource, enif_make_resource, enif_open_resource_type,
    enif_release_resource, ErlNifEnv, ErlNifResourceFlags, ErlNifResourceType,
};
use rustler::{Env, Term};
use std::ffi::CStr;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A resource type holding values of `T`, opened once in the library's `load`.
pub struct RawResourceType<T> {
    ty: AtomicPtr<ErlNifResourceType>,
    _marker: PhantomData<fn() -> T>,
}

unsafe extern "C" fn destructor<T>(_env: *mut ErlNifEnv, obj: *mut c_void) {
    // SAFETY: `obj` is the object `make` allocated for this type (the VM calls a type's
    // destructor only with objects of that type, once, after the last reference is gone). Its
    // first bytes hold the pointer `Box::into_raw` returned, written by `make` before the
    // object was published, and nothing else ever takes ownership of that box.
    unsafe {
        let boxed = std::ptr::read_unaligned(obj as *const *mut T);
        drop(Box::from_raw(boxed));
    }
}

impl<T: Send + Sync + 'static> RawResourceType<T> {
    /// An unopened type.
    pub const fn new() -> Self {
        RawResourceType {
            ty: AtomicPtr::new(std::ptr::null_mut()),
            _marker: PhantomData,
        }
    }

    /// Opens (creates or takes over) the type. Call from the library's `load`; false on
    /// failure, which fails the load.
    pub fn open(&self, env: Env, name: &CStr) -> bool {
        let mut tried = ErlNifResourceFlags::ERL_NIF_RT_CREATE;
        // SAFETY: `env` is the load environment, `name` a valid NUL-terminated string, the
        // destructor has the signature erl_nif expects, and `tried` is a valid out-pointer.
        let ty = unsafe {
            enif_open_resource_type(
                env.as_c_arg(),
                std::ptr::null(),
                name.as_ptr(),
                Some(destructor::<T>),
                ErlNifResourceFlags::ERL_NIF_RT_CREATE,
                &mut tried,
            )
        };
        if ty.is_null() {
            return false;
        }
        self.ty.store(ty as *mut _, Ordering::Release);
        true
    }

    fn get_type(&self) -> *const ErlNifResourceType {
        let ty = self.ty.load(Ordering::Acquire);
        assert!(
            !ty.is_null(),
            "resource type used before the library loaded"
        );
        ty
    }

    /// A new resource term owning `value`.
    pub fn make<'a>(&self, env: Env<'a>, value: T) -> Term<'a> {
        let ty = self.get_type();
        let boxed = Box::into_raw(Box::new(value));
        // SAFETY: `ty` is an opened resource type; the object is allocated with room for one
        // pointer, which is written (unaligned) before the object is turned into a term. After
        // `enif_make_resource` the term holds a reference, so releasing ours hands ownership
        // to the VM, which runs `destructor` when the last reference goes.
        unsafe {
            let obj = enif_alloc_resource(ty, std::mem::size_of::<*mut T>());
            std::ptr::write_unaligned(obj as *mut *mut T, boxed);
            let term = enif_make_resource(env.as_c_arg(), obj);
            enif_release_resource(obj);
            Term::new(env, term)
        }
    }

    /// The value behind `term`, if it is a resource of this type. The reference lives as long
    /// as the term's environment, which keeps the resource alive.
    #[inline]
    pub fn get<'a>(&self, term: Term<'a>) -> Option<&'a T> {
        let ty = self.ty.load(Ordering::Acquire);
        if ty.is_null() {
            return None;
        }
        let mut obj: *const c_void = std::ptr::null();
        // SAFETY: `term` belongs to the calling environment; `enif_get_resource` checks that
        // it is a resource of type `ty` before writing `obj`.
        let found =
            unsafe { enif_get_resource(term.get_env().as_c_arg(), term.as_c_arg(), ty, &mut obj) };
        if found == 0 {
            return None;
        }
        // SAFETY: `obj` is an object `make` created, so it holds a valid `*mut T` whose box is
        // freed only by the destructor, which cannot run while `term` (and so the object) is
        // reachable from the calling environment, i.e. for at least `'a`. `T: Sync`, so a
        // shared reference may be used from any scheduler thread.
        unsafe {
            let boxed = std::ptr::read_unaligned(obj as *const *mut T);
            Some(&*boxed)
        }
    }
}
