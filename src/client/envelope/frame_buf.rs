//! The one buffer an encryptor or decryptor keeps a frame in. It holds plaintext at
//! times, so it is wiped on drop, and it never leaves a copy behind in freed memory.

use std::io::{self, Read};

use zeroize::Zeroize;

/// A read of untrusted length grows the buffer in steps of at most this much, then
/// doubling, so a forged frame length cannot make us allocate what the input does not
/// hold.
const FIRST_STEP: usize = 64 << 10;

/// A frame's worth of bytes, initialized only as far as it has been used and wiped that
/// far on drop. (`Zeroizing<Vec>` wipes the whole capacity, which touches every page of
/// a large frame even for a message of a few bytes.)
///
/// Invariant: nothing is ever written past `len` of the inner `Vec`, so wiping up to
/// `len` wipes everything.
pub(crate) struct FrameBuf(Vec<u8>);

impl FrameBuf {
    /// An empty buffer with room for `n` bytes, none of them touched yet.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// The first `n` bytes, as left by earlier use, zero-filled where never used. Growing
    /// past the capacity moves the contents to a new allocation and wipes the old one
    /// (a plain `Vec` reallocation would free it as it is).
    pub(crate) fn upto(&mut self, n: usize) -> &mut [u8] {
        if self.0.capacity() < n {
            let mut grown = Vec::with_capacity(n.max(self.0.capacity().saturating_mul(2)));
            grown.extend_from_slice(&self.0);
            self.0.as_mut_slice().zeroize();
            self.0 = grown;
        }
        if self.0.len() < n {
            self.0.resize(n, 0);
        }
        self.0.get_mut(..n).unwrap_or_default()
    }

    /// Reads exactly `n` bytes from `reader` into the first `n` bytes, growing with the
    /// bytes that arrive (`n` may come from a forged header).
    pub(crate) fn read_exact_from(
        &mut self,
        reader: &mut impl Read,
        n: usize,
    ) -> io::Result<&mut [u8]> {
        let mut filled = 0;
        while filled < n {
            let step = (n - filled).min(filled.max(FIRST_STEP));
            let buf = self.upto(filled + step);
            reader.read_exact(buf.get_mut(filled..).unwrap_or_default())?;
            filled += step;
        }
        Ok(self.0.get_mut(..n).unwrap_or_default())
    }

    /// The bytes in `range`, or none if it reaches past what was used.
    pub(crate) fn get(&self, range: std::ops::Range<usize>) -> &[u8] {
        self.0.get(range).unwrap_or_default()
    }

    /// Wipes everything used so far.
    pub(crate) fn wipe(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        self.wipe();
    }
}

#[cfg(test)]
mod tests {
    use super::FrameBuf;

    #[test]
    fn growing_keeps_the_contents_and_zero_fills_the_rest() {
        let mut b = FrameBuf::with_capacity(2);
        b.upto(2).copy_from_slice(b"ab");
        assert_eq!(b.upto(5), b"ab\0\0\0");
        b.wipe();
        assert_eq!(b.upto(5), &[0u8; 5]);
    }

    #[test]
    fn a_read_of_a_forged_length_stops_at_the_end_of_the_input() {
        let mut b = FrameBuf::with_capacity(0);
        let input = vec![7u8; 100_000];
        let err = b.read_exact_from(&mut &input[..], usize::MAX).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        // At most the first step and a doubling were allocated, not usize::MAX.
        assert!(b.0.capacity() <= 4 * super::FIRST_STEP);
        let got = b.read_exact_from(&mut &input[..], input.len()).unwrap();
        assert_eq!(got, &input[..]);
    }
}
