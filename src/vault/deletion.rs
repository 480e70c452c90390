//! ScheduleKeyDeletion, CancelKeyDeletion, and the destruction of keys whose waiting
//! period has passed.
//!
//! Destruction is crash-safe in the order the design asks for: metadata is marked
//! before HSM objects are destroyed, and removed only after. (1) The store records that
//! destruction has begun; from then on CancelKeyDeletion refuses, so a crash cannot
//! resurrect the key. (2) Every material version is destroyed in the token (session
//! copies in every worker first). (3) One transaction removes the key, its versions,
//! grants and aliases, and keeps a tombstone. A crash after (1) or (2) leaves a key that
//! is pending deletion and marked; the next sweep (at start-up or on schedule) repeats
//! (2), which finds nothing left or destroys the rest, and does (3).

use std::time::{Duration, SystemTime};

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::Action;
use crate::domain::{KeyArn, KeyId, KeyState, MaterialVersion};
use crate::hsm::MaterialRef;

/// AWS's bounds and default for PendingWindowInDays.
const MIN_WINDOW_DAYS: i32 = 7;
const MAX_WINDOW_DAYS: i32 = 30;
const DEFAULT_WINDOW_DAYS: i32 = 30;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// How old another daemon's claim to make material must be before the orphan sweep
/// takes it over: far longer than the claim's use between makers (an orphan left a
/// while costs nothing; material destroyed under a slow maker would cost its
/// ciphertexts, were recording not refused then).
const ORPHAN_CLAIM_STALE: Duration = Duration::from_secs(300);

/// What ScheduleKeyDeletion answers.
#[derive(Debug)]
pub struct ScheduledDeletion {
    /// The key ARN.
    pub key_arn: KeyArn,
    /// When the key will be destroyed.
    pub deletion_date: SystemTime,
    /// PendingDeletion.
    pub key_state: KeyState,
    /// The waiting period used.
    pub pending_window_in_days: i32,
}

impl Vault {
    /// ScheduleKeyDeletion: from Enabled or Disabled to PendingDeletion, with the
    /// deletion date `PendingWindowInDays` (7..30, default 30) from now.
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        key_id: &str,
        window_days: Option<i32>,
    ) -> Result<ScheduledDeletion, KmsError> {
        let days = match window_days {
            None => DEFAULT_WINDOW_DAYS,
            Some(d) if (MIN_WINDOW_DAYS..=MAX_WINDOW_DAYS).contains(&d) => d,
            Some(_) => {
                return Err(KmsError::validation(format!(
                    "PendingWindowInDays must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}"
                )))
            }
        };
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(caller, Authz::key(Action::SCHEDULE_KEY_DELETION, &key))
            .await?;
        // Whole milliseconds, as the store keeps it: the response then names the date
        // that DescribeKey and the sweep will use.
        let date = whole_millis(self.settings.clock.now() + DAY * days.unsigned_abs());
        let id = key.key_id();
        let done = self
            .write_key(&key, move |s| s.schedule_deletion(&id, date))
            .await?;
        if !done {
            return Err(KmsError::KmsInvalidState(format!(
                "{arn} is {} and cannot be scheduled for deletion.",
                key.state().as_str()
            )));
        }
        tracing::info!(key_id = %id, days, "key deletion scheduled");
        // A key pending deletion serves no cryptographic call: its session copies go
        // now (other daemons on a shared store drop theirs when the change reaches
        // them), not with the token object at the end of the window.
        if let Err(e) = self.hsm.forget_key_everywhere(id).await {
            tracing::warn!(key_id = %id, error = %e, "could not destroy the key's session copies; they go with their sessions");
        }
        Ok(ScheduledDeletion {
            key_arn: arn,
            deletion_date: date,
            key_state: KeyState::PendingDeletion,
            pending_window_in_days: days,
        })
    }

    /// CancelKeyDeletion: back to Disabled (not Enabled), as AWS.
    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<KeyArn, KmsError> {
        let key = self.resolve(caller, key_id).await?;
        let arn = self.arn_of(&key);
        self.authorize(caller, Authz::key(Action::CANCEL_KEY_DELETION, &key))
            .await?;
        let id = key.key_id();
        if !self
            .write_key(&key, move |s| s.cancel_deletion(&id))
            .await?
        {
            return Err(KmsError::KmsInvalidState(format!(
                "{arn} is not pending deletion, or its destruction has begun."
            )));
        }
        tracing::info!(key_id = %id, "key deletion cancelled");
        Ok(arn)
    }

    /// Whether this daemon leads the sweeps among the daemons sharing its store (always,
    /// on a store only one daemon opens). A store that cannot answer says no: a sweep
    /// skipped is retried, one run twice is not undone.
    pub async fn leads_sweeps(&self) -> bool {
        match self.store_call(|s| s.lead()).await {
            Ok(lead) => lead,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether this daemon leads the sweeps; skipping them this time");
                false
            }
        }
    }

    /// Whether other daemons may share the store and the token.
    pub fn store_is_shared(&self) -> bool {
        self.store.shared()
    }

    /// Destroys every key whose deletion date is at or before the vault clock's now,
    /// and finishes any destruction a crash interrupted. Returns the keys destroyed. A
    /// key that fails is logged and left for the next sweep; the others go ahead. The
    /// daemon calls this at start-up and then on a schedule.
    pub async fn destroy_due_keys(&self) -> Result<Vec<KeyId>, KmsError> {
        let now = self.settings.clock.now();
        let due = self
            .store_call(move |s| s.keys_due_for_deletion(now))
            .await?;
        let mut destroyed = Vec::new();
        for id in due {
            let arn = self.key(id).await.ok().flatten().map(|k| self.arn_of(&k));
            let result = self.destroy_key(id, now).await;
            if let (Some(arn), Ok(true) | Err(_)) = (arn, &result) {
                self.audit_background("DeleteKey", arn.to_string(), result.as_ref().err())
                    .await;
            }
            match result {
                Ok(true) => destroyed.push(id),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(key_id = %id, error = %e, "destroying a key failed; the next sweep retries")
                }
            }
        }
        Ok(destroyed)
    }

    /// Steps (1) to (3) for one key; false when it is not (or no longer) due.
    async fn destroy_key(&self, id: KeyId, now: SystemTime) -> Result<bool, KmsError> {
        if !self
            .store_call(move |s| s.begin_destruction(&id, now))
            .await?
        {
            return Ok(false);
        }
        crate::failpoint::hit("destroy.after_begin");
        let Some(key) = self.key(id).await? else {
            return Ok(false);
        };
        // Every recorded version, and the next one: a crash between making material and
        // recording it leaves that object behind (see `new_material`).
        let next = key.current_version().0.checked_add(1).map(MaterialVersion);
        for version in key.versions().into_iter().chain(next) {
            self.hsm
                .destroy_material_everywhere(MaterialRef {
                    key_id: id,
                    version,
                })
                .await?;
            crate::failpoint::hit("destroy.after_version");
        }
        self.store_call(move |s| s.finish_destruction(&id, now))
            .await?;
        crate::failpoint::hit("destroy.after_finish");
        self.keys.remove(&id);
        self.aliases.forget_all();
        tracing::info!(key_id = %id, "key destroyed: material gone from the HSM");
        Ok(true)
    }

    /// Destroys the key-material objects in the token that no metadata points at: left
    /// by a crash between making material and recording it (CreateKey, a rotation or a
    /// roll-over), for a key id the store does not know or a version past the key's
    /// current one. Run once at start-up, before any request is served, so that no
    /// CreateKey of this daemon is between its two steps. Returns how many were
    /// destroyed.
    ///
    /// On a store other daemons share, one of theirs may be between the two steps: it
    /// holds the right to make that version (`Store::claim_material`, taken by CreateKey
    /// and new material alike before the object exists). So an object without metadata
    /// is destroyed only under that claim, taken here, and after the store is read again
    /// under it; a version another daemon is making is left alone (and destroyed by a
    /// later start once its claim is [`ORPHAN_CLAIM_STALE`] old, if that daemon died).
    /// The claim over a destroyed object is kept, so that a maker that was only slow
    /// cannot record the version after all, but abandoned, so that the next maker of the
    /// version takes it at once (`Store::abandon_material`).
    pub async fn destroy_orphan_material(&self) -> Result<usize, KmsError> {
        let objects = self.hsm.material_objects().await?;
        let shared = self.store.shared();
        let mut destroyed = 0;
        for m in objects {
            if !shared {
                destroyed += usize::from(self.destroy_if_orphan(m).await?);
                continue;
            }
            // Claimed only for what looks orphaned, and read again under the claim.
            if !self.is_orphan(m).await? {
                continue;
            }
            let (id, version) = (m.key_id, m.version);
            let claimed = self
                .store_call(move |s| s.claim_material(&id, version, ORPHAN_CLAIM_STALE))
                .await?;
            if !claimed {
                tracing::info!(material = %m.label(), "key material without metadata is being made by another daemon; left alone");
                continue;
            }
            let result = self.destroy_if_orphan(m).await;
            // A claim over destroyed material is kept, abandoned: should its maker be
            // alive after all, recording the version is refused (ClaimLost), while the
            // next maker of the version takes it at once rather than waiting for it to
            // go stale (a roll-over of that key would otherwise stall for that long).
            let _ = if matches!(result, Ok(true)) {
                self.store_call(move |s| s.abandon_material(&id, version))
                    .await
            } else {
                self.store_call(move |s| s.release_material(&id, version))
                    .await
            };
            destroyed += usize::from(result?);
        }
        Ok(destroyed)
    }

    /// Destroys `m` if it is (still) an orphan; true when it was.
    async fn destroy_if_orphan(&self, m: MaterialRef) -> Result<bool, KmsError> {
        if !self.is_orphan(m).await? {
            return Ok(false);
        }
        tracing::warn!(material = %m.label(), "destroying key material that no metadata points at (left by a crash)");
        self.hsm.destroy_material(m).await?;
        Ok(true)
    }

    /// Whether no metadata points at `m`: its key is unknown, `m` is past the key's
    /// current version, or the key takes imported material and has none recorded (an
    /// import or deletion of it that a crash interrupted).
    async fn is_orphan(&self, m: MaterialRef) -> Result<bool, KmsError> {
        let id = m.key_id;
        let stored = self.store_call(move |s| s.get_key(&id)).await?;
        Ok(stored.is_none_or(|k| {
            m.version > k.current_version || Self::imported_material_unrecorded(&k)
        }))
    }

    /// The error for a key that existed and was destroyed, if `id` is one.
    pub(crate) async fn deleted(&self, id: KeyId) -> Result<Option<KmsError>, KmsError> {
        let account = self.store_call(move |s| s.deleted_key(&id)).await?;
        Ok(account
            .map(|a| KmsError::NotFound(format!("Key '{}' does not exist", self.arn(&a, id)))))
    }
}

/// `t` without its sub-millisecond part.
fn whole_millis(t: std::time::SystemTime) -> std::time::SystemTime {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
