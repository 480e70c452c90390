//! One worker's logged-in session and its object-handle cache. Runs on an HSM worker
//! thread only: a cryptoki Session is Send but not Sync, so it never leaves its thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use super::error::TagFailure;
use super::health::{Health, Staleness, Stamp};
use super::material::Part;
use super::mechanisms::Mechanisms;
use super::module::login;
use super::{Forget, HsmError, MaterialRef};
use crate::domain::{KeySpec, KeyUsage, Pin, Plaintext};
use crate::metrics::Metrics;

/// Session copies kept per worker before the cache is emptied and rebuilt.
const MAX_CACHED_KEYS: usize = 1024;
const TAG_BITS: u64 = 128;

/// The token objects of one part of a material, by its CKA_ID (session copies have
/// their own id).
pub(super) fn find_material(
    s: &Session,
    m: &MaterialRef,
    part: Part,
) -> Result<Vec<ObjectHandle>, HsmError> {
    s.find_objects(&[
        Attribute::Class(part.class()),
        Attribute::Token(true),
        Attribute::Id(m.cka_id()),
    ])
    .map_err(HsmError::from_call)
}

/// Every token object carrying a material's CKA_ID, whatever its class (both halves of
/// a key pair).
pub(super) fn find_all_parts(s: &Session, m: &MaterialRef) -> Result<Vec<ObjectHandle>, HsmError> {
    s.find_objects(&[Attribute::Token(true), Attribute::Id(m.cka_id())])
        .map_err(HsmError::from_call)
}

/// Session copies of token keys (`hsm.copy_keys`), shared by a pool's sessions: whether
/// to make them, and whether the token's refusal has been told.
pub(crate) struct KeyCopies {
    enabled: bool,
    /// One warning for the life of the pool, not one per session and key.
    refusal_logged: AtomicBool,
    metrics: Metrics,
}

impl KeyCopies {
    pub(crate) fn new(enabled: bool, metrics: Metrics) -> Self {
        Self {
            enabled,
            refusal_logged: AtomicBool::new(false),
            metrics,
        }
    }

    /// The token refused a copy: the worker uses the token object. Counted every time
    /// (`p11kms_hsm_copy_refused_total`), logged the first time.
    fn refused(&self, e: &HsmError) {
        self.metrics.hsm_copy_refused();
        if !self.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                code = %e.return_code().map_or_else(|| e.to_string(), super::error::ckr_name),
                "the token refuses C_CopyObject: keys are used as token objects, without session copies (slower on SoftHSM2); p11kms_hsm_copy_refused_total counts the refusals, hsm.copy_keys = false stops the attempts; logged once"
            );
        }
    }
}

/// How a worker finds a key's material.
#[derive(Clone, Copy)]
struct CachedKey {
    handle: ObjectHandle,
    /// True for a session-object copy, which must be destroyed when evicted.
    is_copy: bool,
}

/// A worker's session, opened lazily and reopened after a loss.
pub(crate) struct WorkerSession {
    ctx: cryptoki::context::Pkcs11,
    health: Arc<Health>,
    pin: Pin,
    session: Option<Session>,
    /// Which initialisation of the module the session was opened in.
    stamp: Stamp,
    keys: HashMap<(MaterialRef, Part), CachedKey>,
    copies: Arc<KeyCopies>,
    /// What the token offers, probed at start.
    mechanisms: Arc<Mechanisms>,
    metrics: Metrics,
    /// Whether a session was ever opened: a later login is a re-login.
    opened_before: bool,
    /// The secret-sealing key's handle, once found.
    seal_key: Option<ObjectHandle>,
    /// How the token reports a damaged GCM tag.
    tag: TagFailure,
}

impl WorkerSession {
    pub(crate) fn new(
        ctx: cryptoki::context::Pkcs11,
        health: Arc<Health>,
        pin: Pin,
        copies: Arc<KeyCopies>,
        mechanisms: Arc<Mechanisms>,
        metrics: Metrics,
        tag: TagFailure,
    ) -> Self {
        let stamp = health.stamp();
        Self {
            ctx,
            health,
            pin,
            session: None,
            stamp,
            keys: HashMap::new(),
            copies,
            mechanisms,
            metrics,
            opened_before: false,
            seal_key: None,
            tag,
        }
    }

    /// Opens and logs in if needed. A session from before the token was replaced or the
    /// module re-initialised is dropped first (see `health`). Call with
    /// [`Health::enter`]'s guard held.
    pub(crate) fn session(&mut self) -> Result<&Session, HsmError> {
        if self.session.is_some() {
            match self.health.staleness(self.stamp) {
                Staleness::Current => {}
                Staleness::Close => self.reset(),
                Staleness::Forget => self.abandon(),
            }
        }
        if self.session.is_none() {
            // Stamped before opening: a drop-everything round during the open makes the
            // next call close this session again, never keep a session it should drop.
            self.stamp = self.health.stamp();
            let s = self
                .ctx
                .open_rw_session(self.health.slot())
                .map_err(HsmError::from_call)?;
            if self.opened_before {
                self.metrics.hsm_relogin();
            }
            login(&s, &self.pin)?;
            self.opened_before = true;
            self.session = Some(s);
        }
        self.session.as_ref().ok_or(HsmError::PoolStopped)
    }

    /// A cheap real call on the session (C_GetSessionInfo): fails when the token or the
    /// session is gone.
    pub(crate) fn check(&mut self) -> Result<(), HsmError> {
        self.session()?
            .get_session_info()
            .map(|_| ())
            .map_err(HsmError::from_call)
    }

    /// Forgets the session and every cached handle. Session copies die with the session.
    pub(crate) fn reset(&mut self) {
        if self.health.staleness(self.stamp) == Staleness::Forget {
            self.abandon();
            return;
        }
        self.drop_cached();
        self.seal_key = None;
        self.session = None;
    }

    /// Drops the session without closing it: the module was re-initialised, so the
    /// session and its handles are gone, and C_CloseSession by its number could close
    /// another session that has that number now.
    fn abandon(&mut self) {
        if let Some(s) = self.session.take() {
            std::mem::forget(s);
        }
        self.drop_cached();
        self.seal_key = None;
    }

    /// Empties the handle cache without destroying anything (the copies went with the
    /// session), keeping the session-copy gauge true.
    fn drop_cached(&mut self) {
        let copies = self.keys.values().filter(|k| k.is_copy).count();
        self.metrics
            .hsm_session_copies(-i64::try_from(copies).unwrap_or(0));
        self.keys.clear();
    }

    /// Forgets the secret-sealing key's handle (it went stale).
    pub(crate) fn forget_seal_key(&mut self) {
        self.seal_key = None;
    }

    /// The secret-sealing key's handle: cached, else found by its CKA_ID. Never made
    /// here: start-up makes it, so a missing key is an error, not a new key that would
    /// leave every sealed secret unreadable.
    fn seal_key(&mut self) -> Result<ObjectHandle, HsmError> {
        self.session()?;
        if let Some(h) = self.seal_key {
            return Ok(h);
        }
        let h = super::secret_seal::find(self.session()?)?.ok_or(HsmError::SealKeyMissing)?;
        self.seal_key = Some(h);
        Ok(h)
    }

    /// AES-256-GCM under the secret-sealing key. Returns ciphertext || tag.
    pub(crate) fn seal_secret(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let key = self.seal_key()?;
        gcm_encrypt(self.session()?, key, iv, aad, plaintext)
    }

    /// Opens ciphertext || tag sealed by [`Self::seal_secret`].
    pub(crate) fn open_secret(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Plaintext, HsmError> {
        let (key, tag) = (self.seal_key()?, self.tag);
        gcm_decrypt(self.session()?, key, iv, aad, ciphertext_and_tag, tag)
    }

    /// The handle to use for this material: a cached one, else the token object found by
    /// CKA_ID, copied into a session object when enabled (SoftHSM2 re-reads its token file
    /// on every use of a token object; the copy stays sensitive and non-extractable).
    pub(super) fn key(&mut self, m: &MaterialRef) -> Result<ObjectHandle, HsmError> {
        self.part(m, Part::Secret)
    }

    /// The handle of one part of a material, as [`Self::key`] finds a secret key.
    pub(super) fn part(&mut self, m: &MaterialRef, part: Part) -> Result<ObjectHandle, HsmError> {
        // First the session: a stale one takes its cached handles with it.
        self.session()?;
        if let Some(k) = self.keys.get(&(*m, part)) {
            return Ok(k.handle);
        }
        if self.keys.len() >= MAX_CACHED_KEYS {
            self.forget_all();
        }
        let copies = Arc::clone(&self.copies);
        let s = self.session()?;
        let found = find_material(s, m, part)?;
        let token_obj = match found.as_slice() {
            [one] => *one,
            [] => return Err(HsmError::KeyMissing(*m)),
            // generate_key keeps at most one token object per CKA_ID, so every match is
            // the material. More than one match is seen in practice: SoftHSM2 can list an
            // object twice in its in-process index while another session creates one.
            [first, ..] => *first,
        };
        let cached = if copies.enabled {
            // The copy gets its own CKA_ID and label: a look-up by the material's CKA_ID
            // must find only the token object, never another worker's copy (SoftHSM2
            // can report CKA_TOKEN=true on a session copy, so that filter alone is not
            // enough).
            let copy_template = [
                Attribute::Token(false),
                Attribute::Id(m.copy_id()),
                Attribute::Label(format!("{} (session copy)", m.label()).into_bytes()),
            ];
            match s.copy_object(token_obj, &copy_template) {
                Ok(h) => {
                    copies.metrics.hsm_session_copies(1);
                    CachedKey {
                        handle: h,
                        is_copy: true,
                    }
                }
                Err(e) => {
                    let e = HsmError::from_call(e);
                    // A lost session is the pool's to cure, not a refusal.
                    if e.is_session_lost() || e.needs_reinit() {
                        return Err(e);
                    }
                    // A token that refuses C_CopyObject still works, only slower.
                    copies.refused(&e);
                    CachedKey {
                        handle: token_obj,
                        is_copy: false,
                    }
                }
            }
        } else {
            CachedKey {
                handle: token_obj,
                is_copy: false,
            }
        };
        self.keys.insert((*m, part), cached);
        Ok(cached.handle)
    }

    /// Whether the token still holds p11kms's marker, the secret-sealing key that start-up
    /// makes in it: a token that lost it was wiped or replaced.
    pub(crate) fn holds_marker(&mut self) -> Result<bool, HsmError> {
        let s = self.session()?;
        Ok(super::secret_seal::find(s)?.is_some())
    }

    /// The supervisor's probe: the session is usable, the token holds the marker, and
    /// the token's random generator, encryption and decryption answer (a round trip
    /// of a few bytes under the secret-sealing key, on a fresh IV). Ok(false) when the
    /// marker is missing.
    pub(crate) fn self_test(&mut self) -> Result<bool, HsmError> {
        self.check()?;
        if !self.holds_marker()? {
            return Ok(false);
        }
        let drawn = self.random(12)?;
        let mut iv = [0u8; 12];
        iv.copy_from_slice(drawn.expose());
        const PROBE: &[u8] = b"p11kms health probe";
        let sealed = self.seal_secret(&iv, b"probe", PROBE)?;
        let opened = self.open_secret(&iv, b"probe", &sealed)?;
        if opened.expose() != PROBE {
            return Err(HsmError::TagMismatch);
        }
        Ok(true)
    }

    /// Every key-material token object, by the CKA_ID p11kms gave it (other objects, the
    /// session copies and p11kms's own keys have ids of other lengths).
    pub(crate) fn material_objects(&mut self) -> Result<Vec<MaterialRef>, HsmError> {
        use cryptoki::object::AttributeType;
        let s = self.session()?;
        // Secret keys (AES, HMAC) and both halves of key pairs: a half left alone is
        // swept like any orphan.
        let mut found = Vec::new();
        for class in [
            ObjectClass::SECRET_KEY,
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
        ] {
            found.extend(
                s.find_objects(&[Attribute::Class(class), Attribute::Token(true)])
                    .map_err(HsmError::from_call)?,
            );
        }
        let mut out = Vec::new();
        for h in found {
            let attrs = s
                .get_attributes(h, &[AttributeType::Id])
                .map_err(HsmError::from_call)?;
            for a in attrs {
                if let Attribute::Id(id) = a {
                    if let Some(m) = MaterialRef::from_cka_id(&id) {
                        out.push(m);
                    }
                }
            }
        }
        out.sort_by_key(|m| (m.key_id.as_bytes().to_owned(), m.version.0));
        out.dedup();
        Ok(out)
    }

    /// Whether the session is open (a call on it needs no C_OpenSession or C_Login).
    pub(crate) fn is_open(&self) -> bool {
        self.session.is_some()
    }

    /// Forgets every cached handle, destroying the session copies.
    pub(crate) fn forget_all(&mut self) {
        let health = Arc::clone(&self.health);
        let _g = health.enter();
        if self.health.staleness(self.stamp) != Staleness::Current {
            // The copies went with the session (or the module): nothing to destroy.
            self.reset();
            return;
        }
        if let Some(s) = &self.session {
            for k in self.keys.values().filter(|k| k.is_copy) {
                let _ = s.destroy_object(k.handle);
            }
        }
        self.drop_cached();
    }

    /// Destroys a material's token object and forgets its handle. Finding none is
    /// fine (already destroyed, or never made).
    pub(crate) fn destroy_key(&mut self, m: &MaterialRef) -> Result<(), HsmError> {
        self.forget(m);
        destroy_all(self.session()?, m, false)
    }

    /// Forgets one material's cached handle (used when a stale handle is detected).
    pub(crate) fn forget(&mut self, m: &MaterialRef) {
        self.forget_what(&Forget::Material(*m));
    }

    /// Forgets the cached handles `what` covers, destroying their session copies.
    pub(crate) fn forget_what(&mut self, what: &Forget) {
        let health = Arc::clone(&self.health);
        let _g = health.enter();
        if self.health.staleness(self.stamp) != Staleness::Current {
            self.reset();
            return;
        }
        let (session, metrics) = (&self.session, &self.metrics);
        self.keys.retain(|(m, _), k| {
            if !what.covers(m) {
                return true;
            }
            if k.is_copy {
                if let Some(s) = session {
                    let _ = s.destroy_object(k.handle);
                }
                metrics.hsm_session_copies(-1);
            }
            false
        });
    }

    /// AES-256-GCM encryption in the token. Returns ciphertext || tag.
    pub(crate) fn encrypt(
        &mut self,
        m: &MaterialRef,
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let key = self.key(m)?;
        gcm_encrypt(self.session()?, key, iv, aad, plaintext)
    }

    /// AES-256-GCM decryption in the token of ciphertext || tag.
    pub(crate) fn decrypt(
        &mut self,
        m: &MaterialRef,
        iv: &[u8],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Plaintext, HsmError> {
        let (key, tag) = (self.key(m)?, self.tag);
        gcm_decrypt(self.session()?, key, iv, aad, ciphertext_and_tag, tag)
    }

    /// C_GenerateRandom, into a zeroizing buffer from the first byte.
    pub(crate) fn random(&mut self, n: usize) -> Result<Plaintext, HsmError> {
        let mut out = zeroize::Zeroizing::new(vec![0u8; n]);
        self.session()?
            .generate_random_slice(&mut out)
            .map_err(HsmError::from_call)?;
        Ok(Plaintext::new(std::mem::take(&mut *out)))
    }

    /// Generates the material of a key of `spec` and `usage` (see `material`): an AES or
    /// HMAC token key, or an RSA or EC key pair, the secret parts sensitive, never
    /// extractable and private. Copyable so that workers can make session copies.
    ///
    /// Any existing object with this CKA_ID is an orphan of a crash between making the
    /// material and recording it (the vault writes metadata only after this returns), so
    /// nothing was ever encrypted or signed under it: it is destroyed first, leaving one
    /// material per CKA_ID.
    pub(crate) fn generate(
        &mut self,
        m: &MaterialRef,
        spec: KeySpec,
        usage: KeyUsage,
    ) -> Result<(), HsmError> {
        self.forget(m);
        let s = self.session()?;
        destroy_all(s, m, true)?;
        super::material::generate(s, m, spec, usage)
    }

    /// What the token offers, probed at start.
    pub(super) fn mechanisms(&self) -> &Mechanisms {
        &self.mechanisms
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        if self.session.is_some() {
            // Closing is a call on the module: not while it is re-initialised.
            let health = Arc::clone(&self.health);
            let _g = health.enter();
            self.reset();
        }
    }
}

/// The template of every AES-256 key p11kms makes in the token (key material and the
/// secret-sealing key): a private, sensitive, non-extractable token object that can
/// encrypt and decrypt and nothing else.
pub(super) fn aes_key_template(id: Vec<u8>, label: Vec<u8>) -> [Attribute; 16] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(Ulong::from(32u64)),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Id(id),
        Attribute::Label(label),
    ]
}

pub(super) fn gcm_encrypt(
    s: &Session,
    key: ObjectHandle,
    iv: &[u8; 12],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let mut iv = *iv;
    let params = GcmParams::new(&mut iv, aad, Ulong::from(TAG_BITS)).map_err(HsmError::Pkcs11)?;
    s.encrypt(&Mechanism::AesGcm(params), key, plaintext)
        .map_err(HsmError::from_call)
}

/// C_Decrypt with CKM_AES_GCM of ciphertext || tag; a failed tag (as this token
/// reports one) is TagMismatch.
fn gcm_decrypt(
    s: &Session,
    key: ObjectHandle,
    iv: &[u8],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
    tag: TagFailure,
) -> Result<Plaintext, HsmError> {
    gcm_decrypt_raw(s, key, iv, aad, ciphertext_and_tag)
        .map(Plaintext::new)
        .map_err(|e| HsmError::from_decrypt(e, tag))
}

/// C_Decrypt with CKM_AES_GCM, the token's answer as it gave it.
pub(super) fn gcm_decrypt_raw(
    s: &Session,
    key: ObjectHandle,
    iv: &[u8],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Vec<u8>, cryptoki::error::Error> {
    let mut iv = iv.to_vec();
    let params = GcmParams::new(&mut iv, aad, Ulong::from(TAG_BITS))?;
    s.decrypt(&Mechanism::AesGcm(params), key, ciphertext_and_tag)
}

/// Destroys every token object with the material's CKA_ID. An object the module lists
/// twice (see `key`) is gone by its second handle, which is not an error. With
/// `orphans`, each one found is logged as left by a crash.
pub(super) fn destroy_all(s: &Session, m: &MaterialRef, orphans: bool) -> Result<(), HsmError> {
    // Every part is tried, the first failure reported: a key pair's private half must
    // not survive because its public half could not be destroyed first.
    let mut failed = None;
    for o in find_all_parts(s, m)? {
        if orphans {
            tracing::warn!(material = %m.label(), "destroying an orphaned key object left by a crash");
        }
        match s.destroy_object(o) {
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::ObjectHandleInvalid,
                _,
            ))
            | Ok(()) => {}
            Err(e) => {
                failed.get_or_insert(HsmError::from_call(e));
            }
        }
    }
    failed.map_or(Ok(()), Err)
}
