//! Identity policies and principal tags: managed by the principal's account root, or by
//! whoever that account's identity policies allow the IAM action on the principal
//! (iam:PutRolePolicy, iam:TagUser, …). Another account's principals are out of reach.

use super::authorize::Authz;
use super::{Caller, KmsError, Vault};
use crate::authz::{self, Action, ContextValue, PolicyError, PolicyKind};
use crate::identity::{Principal, PrincipalKind};

/// IAM: an inline policy document is at most 10,240 characters.
const MAX_IDENTITY_POLICY: usize = 10_240;
/// IAM: at most 50 tags on a role or user.
const MAX_TAGS: usize = 50;

/// The four policy operations and the three tag operations.
#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
    List,
    Delete,
    Tag,
    Untag,
    ListTags,
}

fn iam_action(op: Op, kind: &PrincipalKind) -> Result<Action, KmsError> {
    let role = match kind {
        PrincipalKind::Role(_) => true,
        PrincipalKind::User(_) => false,
        PrincipalKind::Root => {
            return Err(KmsError::validation(
                "policies and tags attach to roles and users; the account root already has every permission",
            ))
        }
    };
    Ok(match (op, role) {
        (Op::Put, true) => Action::IAM_PUT_ROLE_POLICY,
        (Op::Get, true) => Action::IAM_GET_ROLE_POLICY,
        (Op::List, true) => Action::IAM_LIST_ROLE_POLICIES,
        (Op::Delete, true) => Action::IAM_DELETE_ROLE_POLICY,
        (Op::Tag, true) => Action::IAM_TAG_ROLE,
        (Op::Untag, true) => Action::IAM_UNTAG_ROLE,
        (Op::ListTags, true) => Action::IAM_LIST_ROLE_TAGS,
        (Op::Put, false) => Action::IAM_PUT_USER_POLICY,
        (Op::Get, false) => Action::IAM_GET_USER_POLICY,
        (Op::List, false) => Action::IAM_LIST_USER_POLICIES,
        (Op::Delete, false) => Action::IAM_DELETE_USER_POLICY,
        (Op::Tag, false) => Action::IAM_TAG_USER,
        (Op::Untag, false) => Action::IAM_UNTAG_USER,
        (Op::ListTags, false) => Action::IAM_LIST_USER_TAGS,
    })
}

/// IAM policy names: 1..128 of letters, digits and `+=,.@_-`.
fn check_policy_name(name: &str) -> Result<(), KmsError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(KmsError::validation(
            "PolicyName must be 1 to 128 letters, digits and +=,.@_-",
        ))
    }
}

/// IAM's tag rules (the `Tag` type of the IAM API): a key of 1..128 and a value of
/// 0..256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, no `aws:` prefix. The
/// character set matters beyond tidiness: a principal tag is substituted into policies
/// as `${aws:PrincipalTag/…}`, where a `*` or `?` would become a wildcard.
pub(crate) fn check_tag(key: &str, value: &str) -> Result<(), KmsError> {
    let key_len = key.chars().count();
    if key_len == 0 || key_len > 128 || value.chars().count() > 256 {
        return Err(KmsError::validation(
            "a tag key is 1 to 128 characters and a value at most 256",
        ));
    }
    // \p{Z} is space separators: no tabs, newlines or other control characters.
    let allowed = |c: char| {
        c.is_alphabetic()
            || c.is_numeric()
            || (c.is_whitespace() && !c.is_control())
            || "_.:/=+-@".contains(c)
    };
    if !key.chars().all(allowed) || !value.chars().all(allowed) {
        return Err(KmsError::validation(
            "tag keys and values contain only letters, digits, spaces and _ . : / = + - @",
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(KmsError::validation(
            "tag keys beginning with aws: are reserved",
        ));
    }
    Ok(())
}

/// What a principal-management request says about tags, for IAM's condition keys.
#[derive(Default)]
struct TagRequest<'a> {
    /// aws:RequestTag/<key> (TagRole, TagUser).
    tags: &'a [(String, String)],
    /// aws:TagKeys (TagRole, TagUser, UntagRole, UntagUser).
    keys: Option<Vec<String>>,
}

impl Vault {
    /// Parses the target principal and authorizes `op` on it for the caller.
    async fn authorize_principal_op(
        &self,
        caller: &Caller,
        target: &str,
        op: Op,
    ) -> Result<Principal, KmsError> {
        self.authorize_principal_tags(caller, target, op, TagRequest::default())
            .await
    }

    /// Same, with the request's tags: as in IAM, every principal operation sees the
    /// target's own tags as aws:ResourceTag/<key>, and the tag operations also see
    /// aws:RequestTag/<key> and aws:TagKeys, so that IAM's guardrails (deny tagging
    /// unless the keys are allowed, deny policy changes on protected principals) hold.
    async fn authorize_principal_tags(
        &self,
        caller: &Caller,
        target: &str,
        op: Op,
        request: TagRequest<'_>,
    ) -> Result<Principal, KmsError> {
        let principal: Principal = target
            .parse()
            .map_err(|e| KmsError::validation(format!("PrincipalArn: {e}")))?;
        let action = iam_action(op, principal.kind())?;
        if principal.account() != caller.principal.account() {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: {} on resource: {} because it belongs to another account",
                caller.principal, action.0, principal
            )));
        }
        let mut a = Authz::account(action);
        a.resource = Some((principal.arn().to_owned(), principal.account().clone()));
        // Only the target's tags: its policies need not parse to be managed (a bad one
        // must stay removable).
        let arn = principal.arn().to_owned();
        let target_tags = self.store_call(move |s| s.principal_tags(&arn)).await?;
        for (k, v) in &target_tags {
            a.named.push((format!("aws:ResourceTag/{k}"), v.clone()));
        }
        for (k, v) in request.tags {
            a.named.push((format!("aws:RequestTag/{k}"), v.clone()));
        }
        if let Some(keys) = request.keys {
            a.many.push(("aws:TagKeys", ContextValue::Many(keys)));
        }
        self.authorize(caller, a).await?;
        Ok(principal)
    }

    /// Creates or replaces a named identity policy of a role or user.
    pub async fn put_principal_policy(
        &self,
        caller: &Caller,
        target: &str,
        name: &str,
        document: String,
    ) -> Result<(), KmsError> {
        check_policy_name(name)?;
        if document.chars().count() > MAX_IDENTITY_POLICY {
            return Err(KmsError::LimitExceeded(format!(
                "an identity policy is at most {MAX_IDENTITY_POLICY} characters"
            )));
        }
        authz::parse_policy(&document, PolicyKind::Identity).map_err(|e| match e {
            PolicyError::TooLarge => KmsError::LimitExceeded(e.to_string()),
            e => KmsError::MalformedPolicyDocument(e.to_string()),
        })?;
        let p = self.authorize_principal_op(caller, target, Op::Put).await?;
        let (arn, n) = (p.arn().to_owned(), name.to_owned());
        self.store_call(move |s| s.put_identity_policy(&arn, &n, &document))
            .await?;
        self.principals.invalidate(p.arn());
        tracing::info!(principal = %p, policy = name, "identity policy put");
        Ok(())
    }

    /// One identity policy's document.
    pub async fn get_principal_policy(
        &self,
        caller: &Caller,
        target: &str,
        name: &str,
    ) -> Result<String, KmsError> {
        check_policy_name(name)?;
        let p = self.authorize_principal_op(caller, target, Op::Get).await?;
        let arn = p.arn().to_owned();
        let all = self.store_call(move |s| s.identity_policies(&arn)).await?;
        all.into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| KmsError::NotFound(format!("{p} has no policy named {name:?}")))
    }

    /// Names of a principal's identity policies.
    pub async fn list_principal_policies(
        &self,
        caller: &Caller,
        target: &str,
    ) -> Result<Vec<String>, KmsError> {
        let p = self
            .authorize_principal_op(caller, target, Op::List)
            .await?;
        let arn = p.arn().to_owned();
        let all = self.store_call(move |s| s.identity_policies(&arn)).await?;
        Ok(all.into_iter().map(|(n, _)| n).collect())
    }

    /// Deletes one identity policy; takes effect on the next request.
    pub async fn delete_principal_policy(
        &self,
        caller: &Caller,
        target: &str,
        name: &str,
    ) -> Result<(), KmsError> {
        check_policy_name(name)?;
        let p = self
            .authorize_principal_op(caller, target, Op::Delete)
            .await?;
        let (arn, n) = (p.arn().to_owned(), name.to_owned());
        let deleted = self
            .store_call(move |s| s.delete_identity_policy(&arn, &n))
            .await?;
        self.principals.invalidate(p.arn());
        if !deleted {
            return Err(KmsError::NotFound(format!(
                "{p} has no policy named {name:?}"
            )));
        }
        Ok(())
    }

    /// Adds or replaces tags on a role or user.
    pub async fn tag_principal(
        &self,
        caller: &Caller,
        target: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), KmsError> {
        if tags.is_empty() {
            return Err(KmsError::validation("Tags must not be empty"));
        }
        for (k, v) in &tags {
            check_tag(k, v)?;
        }
        // IAM tag keys ignore case, so Team and team in one request would be one tag
        // with two values: refused, as IAM refuses it.
        let mut seen = std::collections::HashSet::new();
        if let Some((k, _)) = tags
            .iter()
            .find(|(k, _)| !seen.insert(k.to_ascii_lowercase()))
        {
            return Err(KmsError::validation(format!(
                "the tag key {k:?} appears twice in Tags (tag keys of roles and users ignore case)"
            )));
        }
        let keys = tags.iter().map(|(k, _)| k.clone()).collect();
        let p = self
            .authorize_principal_tags(
                caller,
                target,
                Op::Tag,
                TagRequest {
                    tags: &tags,
                    keys: Some(keys),
                },
            )
            .await?;
        let arn = p.arn().to_owned();
        let r = self
            .store_call(move |s| s.tag_principal(&arn, &tags, MAX_TAGS))
            .await;
        self.principals.invalidate(p.arn());
        r
    }

    /// Removes tags by key.
    pub async fn untag_principal(
        &self,
        caller: &Caller,
        target: &str,
        keys: Vec<String>,
    ) -> Result<(), KmsError> {
        if keys.is_empty() {
            return Err(KmsError::validation("TagKeys must not be empty"));
        }
        // Length only: a tag stored before the character rules must stay removable.
        if keys.iter().any(|k| k.is_empty() || k.chars().count() > 128) {
            return Err(KmsError::validation("a tag key is 1 to 128 characters"));
        }
        let p = self
            .authorize_principal_tags(
                caller,
                target,
                Op::Untag,
                TagRequest {
                    tags: &[],
                    keys: Some(keys.clone()),
                },
            )
            .await?;
        let arn = p.arn().to_owned();
        self.store_call(move |s| s.untag_principal(&arn, &keys))
            .await?;
        self.principals.invalidate(p.arn());
        Ok(())
    }

    /// A principal's tags.
    pub async fn list_principal_tags(
        &self,
        caller: &Caller,
        target: &str,
    ) -> Result<Vec<(String, String)>, KmsError> {
        let p = self
            .authorize_principal_op(caller, target, Op::ListTags)
            .await?;
        let arn = p.arn().to_owned();
        self.store_call(move |s| s.principal_tags(&arn)).await
    }
}
