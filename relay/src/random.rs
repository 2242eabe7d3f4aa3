//! Random bytes from the operating system: nonce keys and transaction ids.
//! Nothing here needs a seeded or reproducible generator.

use std::io;

/// Fills `buf` with random bytes.
///
/// # Errors
///
/// The operating system's error if it has no randomness to give.
pub(crate) fn fill(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(io::Error::other)
}
