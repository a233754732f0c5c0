//! Zeroize-on-drop holder for expanded key state (cipher key schedules,
//! GCM hash keys, HMAC inner/outer states).

use std::mem::ManuallyDrop;
use std::ops::Deref;

/// Types whose whole state lives inline (no heap, no handles), so that
/// overwriting their bytes with zeros and never running their destructor
/// releases nothing and leaves no copy of the key behind.
pub trait FlatKeyState {}

impl FlatKeyState for aes::Aes128 {}
impl FlatKeyState for aes::Aes192 {}
impl FlatKeyState for aes::Aes256 {}
impl FlatKeyState for super::des::Des {}
impl FlatKeyState for super::des::TdesEde3 {}
impl FlatKeyState for aes::Aes128Enc {}
impl FlatKeyState for aes::Aes192Enc {}
impl FlatKeyState for aes::Aes256Enc {}
impl<C> FlatKeyState for super::gcm::Gcm<C> where C: FlatKeyState {}
impl FlatKeyState for hmac::Hmac<md5::Md5> {}
impl FlatKeyState for hmac::Hmac<sha2::Sha256> {}

/// Owns a key state and wipes its memory when dropped.
pub struct Wiped<T: FlatKeyState>(ManuallyDrop<T>);

impl<T: FlatKeyState> Wiped<T> {
    pub fn new(v: T) -> Self {
        Wiped(ManuallyDrop::new(v))
    }
}

impl<T: FlatKeyState> Deref for Wiped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: FlatKeyState> Drop for Wiped<T> {
    fn drop(&mut self) {
        // SAFETY: `T: FlatKeyState` owns no heap memory or other resources,
        // so skipping its destructor leaks nothing; the value is never used
        // again after being zeroed.
        unsafe { zeroize::zeroize_flat_type::<T>(&mut *self.0) }
    }
}
