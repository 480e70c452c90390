//! Loading the PKCS#11 module, finding the token, probing its mechanisms, and (for dev
//! mode only) initialising a fresh token. Vendor-neutral: nothing here is SoftHSM's.

use std::fmt;
use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use std::sync::OnceLock;

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};

use super::error::TagFailure;
use super::session::{gcm_decrypt_raw, gcm_encrypt};
use super::HsmError;
use crate::domain::Pin;

/// Which token to use: by label (the usual way) or by slot id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// CKA token label, compared after trimming the blank padding.
    Label(String),
    /// A fixed slot id.
    Slot(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Label(l) => write!(f, "label {l:?}"),
            Self::Slot(s) => write!(f, "slot {s}"),
        }
    }
}

/// Environment variables a PKCS#11 module reads (`[hsm] env`), e.g. kryoptic's
/// `KRYOPTIC_CONF`: set in the process before the module is loaded, so that the module
/// gets them from the configuration and not from whatever shell started the daemon.
/// Values may be secret: `Debug` and the log show the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ModuleEnv(Vec<(String, String)>);

impl ModuleEnv {
    /// Variables already validated (`config`): names are identifiers, values hold no
    /// NUL byte.
    pub(crate) fn new(vars: Vec<(String, String)>) -> Self {
        Self(vars)
    }

    /// The variables' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    /// Sets the variables in this process's environment. Call it before the module is
    /// loaded and while no other thread runs (the daemon does so at start-up, before
    /// its runtime and pool exist): a thread reading the environment at the same
    /// moment could see it half-changed.
    /// Variables already as configured are left alone, so that a second load in one
    /// process (dev mode's token set-up, then the daemon's) neither sets nor logs them
    /// again.
    fn apply(&self) {
        let mut set = Vec::new();
        let mut replaced = Vec::new();
        for (name, value) in &self.0 {
            match std::env::var(name) {
                Ok(old) if old == *value => continue,
                Ok(_) => replaced.push(name.as_str()),
                Err(_) => {}
            }
            std::env::set_var(name, value);
            set.push(name.as_str());
        }
        if !set.is_empty() {
            tracing::info!(
                variables = ?set,
                replaced_inherited = ?replaced,
                "set the PKCS#11 module's environment from hsm.env"
            );
        }
    }
}

impl fmt::Debug for ModuleEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A loaded and initialised PKCS#11 module. One per process: C_Initialize may run only
/// once per module per process.
pub struct Module {
    ctx: Pkcs11,
    /// How the token reports a damaged GCM tag, once learnt.
    tag_failure: OnceLock<TagFailure>,
}

impl Module {
    /// dlopens the module and calls C_Initialize with OS locking, since the pool calls it
    /// from several threads.
    pub fn load(path: &Path) -> Result<Self, HsmError> {
        Self::load_with_env(path, &ModuleEnv::default())
    }

    /// Sets the module's environment ([`ModuleEnv`]), then loads it as [`Self::load`]
    /// does. Call it while no other thread runs.
    pub fn load_with_env(path: &Path, env: &ModuleEnv) -> Result<Self, HsmError> {
        env.apply();
        let err = |source| HsmError::ModuleLoad {
            path: path.display().to_string(),
            source,
        };
        let ctx = Pkcs11::new(path).map_err(err)?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(err)?;
        Ok(Self {
            ctx,
            tag_failure: OnceLock::new(),
        })
    }

    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }

    /// The slot holding the selected, initialised token.
    pub fn find_slot(&self, sel: &TokenSelector) -> Result<Slot, HsmError> {
        find_slot(&self.ctx, sel)
    }

    /// Refuses a token that cannot do what every key needs: AES key generation and
    /// AES-GCM. Asked of the token (C_GetMechanismInfo) rather than assumed per vendor.
    pub fn probe_mechanisms(&self, slot: Slot) -> Result<(), HsmError> {
        let info = |m, name| match self.ctx.get_mechanism_info(slot, m) {
            Ok(i) => Ok(i),
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::MechanismInvalid, _)) => {
                Err(HsmError::MissingMechanism(name))
            }
            Err(e) => Err(HsmError::Pkcs11(e)),
        };
        let weak = |mechanism, what| Err(HsmError::WeakMechanism { mechanism, what });
        let keygen = info(MechanismType::AES_KEY_GEN, "CKM_AES_KEY_GEN")?;
        if !keygen.generate() {
            return weak("CKM_AES_KEY_GEN", "generate keys");
        }
        // AES key sizes are in bytes; some modules report bits.
        if keygen.max_key_size() < 32 {
            return weak("CKM_AES_KEY_GEN", "make 256-bit keys");
        }
        let gcm = info(MechanismType::AES_GCM, "CKM_AES_GCM")?;
        if !(gcm.encrypt() && gcm.decrypt()) {
            return weak("CKM_AES_GCM", "encrypt and decrypt");
        }
        let token = self.ctx.get_token_info(slot).map_err(HsmError::Pkcs11)?;
        if !token.rng() {
            return weak("token", "generate random numbers (CKF_RNG)");
        }
        Ok(())
    }

    /// How this token answers C_Decrypt of an AES-GCM ciphertext with a damaged tag,
    /// learnt the first time it is asked (the pool asks when it starts): on a throw-away
    /// session, a session key (never a token object) encrypts a few bytes, one bit of
    /// the tag is flipped, and the decryption's return code is kept. Only that code then
    /// means bad ciphertext besides the standard's own (see `HsmError::from_decrypt`).
    /// A token that accepts the damaged tag is refused.
    pub(crate) fn tag_failure(&self, slot: Slot, pin: &Pin) -> Result<TagFailure, HsmError> {
        if let Some(known) = self.tag_failure.get() {
            return Ok(*known);
        }
        let s = self.ctx.open_ro_session(slot).map_err(HsmError::Pkcs11)?;
        login(&s, pin)?;
        let key = s
            .generate_key(&Mechanism::AesKeyGen, &probe_key_template())
            .map_err(HsmError::from_call)?;
        // A key made for this one encryption: a fixed IV never repeats under it.
        let iv = [0u8; 12];
        let answer = match gcm_encrypt(&s, key, &iv, b"p11kms tag probe", b"p11kms tag probe") {
            Ok(mut sealed) => {
                if let Some(last) = sealed.last_mut() {
                    *last ^= 0x01;
                }
                gcm_decrypt_raw(&s, key, &iv, b"p11kms tag probe", &sealed)
            }
            Err(e) => {
                let _ = s.destroy_object(key);
                return Err(e);
            }
        };
        let _ = s.destroy_object(key);
        let learnt = match answer {
            Ok(_) => {
                return Err(HsmError::WeakMechanism {
                    mechanism: "CKM_AES_GCM",
                    what: "detect a damaged tag (it decrypted one)",
                })
            }
            Err(answer) => TagFailure::learnt(answer)?,
        };
        tracing::info!(answer = %learnt, "the token reports a damaged AES-GCM tag with this code");
        Ok(*self.tag_failure.get_or_init(|| learnt))
    }

    /// Logs in once on a throw-away session so that a wrong PIN is a start-up error
    /// rather than a failure of the first request.
    pub fn check_login(&self, slot: Slot, pin: &Pin) -> Result<(), HsmError> {
        let s = self.ctx.open_ro_session(slot).map_err(HsmError::Pkcs11)?;
        login(&s, pin)?;
        Ok(())
    }

    /// Finds the key that seals the daemon's secrets (secret access keys), making it on
    /// first start, on a throw-away session: a token that cannot make it stops start-up.
    pub fn ensure_secret_seal_key(&self, slot: Slot, pin: &Pin) -> Result<(), HsmError> {
        let s = self.ctx.open_rw_session(slot).map_err(HsmError::Pkcs11)?;
        login(&s, pin)?;
        super::secret_seal::ensure(&s).map(drop)
    }

    /// True when a token with this label exists.
    pub fn has_token(&self, label: &str) -> Result<bool, HsmError> {
        match self.find_slot(&TokenSelector::Label(label.to_owned())) {
            Ok(_) => Ok(true),
            Err(HsmError::TokenNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Initialises the first slot with an uninitialised token (C_InitToken) and sets the
    /// user PIN (C_InitPIN). Used by dev mode; production tokens are the operator's.
    pub fn init_token(&self, label: &str, so_pin: &Pin, user_pin: &Pin) -> Result<(), HsmError> {
        let slots = self.ctx.get_slots_with_token().map_err(HsmError::Pkcs11)?;
        let slot = slots
            .into_iter()
            .find(|s| {
                self.ctx
                    .get_token_info(*s)
                    .map(|t| !t.token_initialized())
                    .unwrap_or(false)
            })
            .ok_or_else(|| HsmError::TokenNotFound("an uninitialised token".into()))?;
        let so = AuthPin::from(so_pin.expose());
        self.ctx
            .init_token(slot, &so, label)
            .map_err(HsmError::Pkcs11)?;
        let s = self.ctx.open_rw_session(slot).map_err(HsmError::Pkcs11)?;
        s.login(UserType::So, Some(&so)).map_err(HsmError::Login)?;
        s.init_pin(&AuthPin::from(user_pin.expose()))
            .map_err(HsmError::Pkcs11)?;
        s.logout().map_err(HsmError::Pkcs11)?;
        Ok(())
    }

    /// C_Finalize. Needed after C_InitToken because some modules (SoftHSM2 among them)
    /// only show a newly initialised token under its final slot id after a re-initialise.
    pub fn finalize(self) -> Result<(), HsmError> {
        self.ctx.finalize().map_err(HsmError::Pkcs11)
    }
}

/// The key of [`Module::tag_failure`]'s probe: a session object (gone with the
/// session), sensitive and never extractable like every key p11kms makes.
fn probe_key_template() -> [Attribute; 8] {
    [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(Ulong::from(32u64)),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]
}

/// The slot holding the selected, initialised token.
pub(crate) fn find_slot(ctx: &Pkcs11, sel: &TokenSelector) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(HsmError::Pkcs11)?;
    for slot in slots {
        let hit = match sel {
            TokenSelector::Slot(id) => slot.id() == *id,
            TokenSelector::Label(want) => ctx
                .get_token_info(slot)
                .map(|t| t.label().trim_end() == want)
                .unwrap_or(false),
        };
        if hit {
            return Ok(slot);
        }
    }
    Err(HsmError::TokenNotFound(sel.to_string()))
}

/// C_Login as the user. CKR_USER_ALREADY_LOGGED_IN is success: login state is shared by
/// all sessions of the application, so a second session is already logged in.
pub(crate) fn login(s: &cryptoki::session::Session, pin: &Pin) -> Result<(), HsmError> {
    match s.login(UserType::User, Some(&AuthPin::from(pin.expose()))) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
            Ok(())
        }
        Err(e) => Err(HsmError::Login(e)),
    }
}

/// A key object as the token reports it, for inventories and tests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenObject {
    /// `secret-key` (AES and HMAC key material), `private-key` or `public-key` (the halves
    /// of asymmetric key material and of the audit checkpoint key).
    pub class: &'static str,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID, hex.
    pub id: String,
    /// CKA_TOKEN.
    pub token: bool,
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_PRIVATE.
    pub private: bool,
}

impl Module {
    /// Every secret-key, private-key and public-key token object, read directly from the
    /// token (no daemon).
    pub fn key_objects(&self, slot: Slot, pin: &Pin) -> Result<Vec<TokenObject>, HsmError> {
        use cryptoki::object::{Attribute, AttributeType, ObjectClass};
        let s = self.ctx.open_ro_session(slot).map_err(HsmError::Pkcs11)?;
        login(&s, pin)?;
        let mut handles = Vec::new();
        for (class, name) in [
            (ObjectClass::SECRET_KEY, "secret-key"),
            (ObjectClass::PRIVATE_KEY, "private-key"),
            (ObjectClass::PUBLIC_KEY, "public-key"),
        ] {
            let found = s
                .find_objects(&[Attribute::Class(class), Attribute::Token(true)])
                .map_err(HsmError::Pkcs11)?;
            handles.extend(found.into_iter().map(|h| (h, name)));
        }
        let mut out = Vec::new();
        for (h, class) in handles {
            // A public key has no CKA_SENSITIVE or CKA_EXTRACTABLE to ask for.
            let wanted: &[AttributeType] = if class == "public-key" {
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Token,
                    AttributeType::Private,
                ]
            } else {
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Token,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Private,
                ]
            };
            let attrs = s.get_attributes(h, wanted);
            let attrs = match attrs {
                Ok(a) => a,
                // Destroyed since it was found (a running daemon's deletion sweep): it
                // is no longer on the token, which is what the caller asks about.
                Err(cryptoki::error::Error::Pkcs11(
                    cryptoki::error::RvError::ObjectHandleInvalid,
                    _,
                )) => continue,
                Err(e) => return Err(HsmError::Pkcs11(e)),
            };
            let mut o = TokenObject {
                class,
                label: String::new(),
                id: String::new(),
                token: false,
                sensitive: false,
                // Read below for secret and private keys; public keys are meant to be read.
                extractable: true,
                private: false,
            };
            for a in attrs {
                match a {
                    Attribute::Label(l) => o.label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(id) => o.id = crate::domain::to_hex(&id),
                    Attribute::Token(v) => o.token = v,
                    Attribute::Sensitive(v) => o.sensitive = v,
                    Attribute::Extractable(v) => o.extractable = v,
                    Attribute::Private(v) => o.private = v,
                    _ => {}
                }
            }
            out.push(o);
        }
        Ok(out)
    }
}
