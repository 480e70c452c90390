//! Containers for secret bytes: zeroized on drop, and a Debug that shows only a length.

use std::fmt;

use zeroize::Zeroizing;

/// Plaintext or data-key bytes. No Display; Debug prints the length only; no `==`
/// either, since a derived comparison is not constant-time.
#[derive(Clone, Default)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Takes ownership of the bytes; they are wiped when this value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// The secret bytes. The name says what it does: callers must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Moves the bytes out into a plain Vec for a wire message whose own Drop wipes it.
    pub fn into_exposed_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut *self.0)
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

/// A PKCS#11 user PIN, read from an env var or a file, never from argv or config.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps a PIN string.
    pub fn new(pin: String) -> Self {
        Self(Zeroizing::new(pin))
    }
    /// The PIN itself, for the one C_Login call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secret_bytes() {
        let p = Plaintext::new(b"hunter2-secret".to_vec());
        assert_eq!(format!("{p:?}"), "Plaintext(14 bytes)");
        let pin = Pin::new("123456".into());
        assert!(!format!("{pin:?}").contains("123456"));
    }
}
