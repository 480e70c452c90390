//! Typed policies: what `parse` produces and `evaluate` consumes. Condition keys are
//! lower-cased and principals normalised at parse time, so evaluation does no string
//! rewriting per request.

/// A parsed policy document.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Statements in document order.
    pub statements: Vec<Statement>,
    /// True for Version 2012-10-17: only then are `${…}` policy variables substituted.
    pub variables: bool,
}

impl Policy {
    /// Whether evaluating it can read a condition key of the request: it has a
    /// Condition, or a Resource pattern with a policy variable (substituted only under
    /// Version 2012-10-17). Principals and actions are matched against the request's
    /// fixed fields, so a policy without either needs no condition key at all.
    pub fn reads_condition_keys(&self) -> bool {
        self.statements.iter().any(|s| {
            !s.conditions.is_empty()
                || (self.variables
                    && s.resource
                        .as_ref()
                        .is_some_and(|r| r.patterns.iter().any(|p| p.contains("${"))))
        })
    }
}

/// Allow or Deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// Position in the document, from 0.
    pub index: usize,
    /// Sid, when given.
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Who it applies to (absent in identity policies).
    pub principal: PrincipalClause,
    /// Which actions.
    pub action: Matcher,
    /// Which resources; `None` when the statement has neither Resource nor NotResource,
    /// which makes it apply to nothing.
    pub resource: Option<Matcher>,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

/// Principal, NotPrincipal, or neither (identity policies).
#[derive(Clone, Debug, PartialEq)]
pub enum PrincipalClause {
    /// Identity policy: the principal is the one the policy is attached to.
    Implicit,
    /// `Principal`.
    Principal(PrincipalSet),
    /// `NotPrincipal`.
    NotPrincipal(PrincipalSet),
}

/// The principals a statement names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrincipalSet {
    /// `"*"` or `{"AWS": "*"}`.
    pub any: bool,
    /// IAM principal ARNs, exactly as written (no wildcards: AWS refuses them here).
    pub arns: Vec<String>,
    /// Bare 12-digit account ids: each means that account's root in whatever partition
    /// the daemon serves, so a policy written for `aws` keeps its meaning in `aws-us-gov`.
    pub accounts: Vec<String>,
    /// Service, Federated and CanonicalUser principals: kept so the policy round-trips,
    /// never matched by an mTLS caller.
    pub others: Vec<String>,
}

/// Action/NotAction or Resource/NotResource: patterns and whether the list is negated.
#[derive(Clone, Debug, PartialEq)]
pub struct Matcher {
    /// True for NotAction / NotResource.
    pub negated: bool,
    /// Glob patterns (`*`, `?`).
    pub patterns: Vec<String>,
}

/// The set qualifier of a condition operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qualifier {
    /// None: a single-valued test.
    Single,
    /// `ForAllValues:`
    ForAllValues,
    /// `ForAnyValue:`
    ForAnyValue,
}

/// The condition operators of the IAM policy grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // The variants are the AWS operator names.
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

impl Operator {
    /// Every operator with its AWS name.
    pub const ALL: [(&'static str, Operator); 27] = [
        ("StringEquals", Self::StringEquals),
        ("StringNotEquals", Self::StringNotEquals),
        ("StringEqualsIgnoreCase", Self::StringEqualsIgnoreCase),
        ("StringNotEqualsIgnoreCase", Self::StringNotEqualsIgnoreCase),
        ("StringLike", Self::StringLike),
        ("StringNotLike", Self::StringNotLike),
        ("NumericEquals", Self::NumericEquals),
        ("NumericNotEquals", Self::NumericNotEquals),
        ("NumericLessThan", Self::NumericLessThan),
        ("NumericLessThanEquals", Self::NumericLessThanEquals),
        ("NumericGreaterThan", Self::NumericGreaterThan),
        ("NumericGreaterThanEquals", Self::NumericGreaterThanEquals),
        ("DateEquals", Self::DateEquals),
        ("DateNotEquals", Self::DateNotEquals),
        ("DateLessThan", Self::DateLessThan),
        ("DateLessThanEquals", Self::DateLessThanEquals),
        ("DateGreaterThan", Self::DateGreaterThan),
        ("DateGreaterThanEquals", Self::DateGreaterThanEquals),
        ("Bool", Self::Bool),
        ("BinaryEquals", Self::BinaryEquals),
        ("IpAddress", Self::IpAddress),
        ("NotIpAddress", Self::NotIpAddress),
        ("ArnEquals", Self::ArnEquals),
        ("ArnLike", Self::ArnLike),
        ("ArnNotEquals", Self::ArnNotEquals),
        ("ArnNotLike", Self::ArnNotLike),
        ("Null", Self::Null),
    ];

    /// Negated operators match when no value matches, and are true for a missing key.
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NumericNotEquals
                | Self::DateNotEquals
                | Self::NotIpAddress
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }

    /// Policy variables are substituted only in string and ARN operators.
    pub fn takes_variables(self) -> bool {
        matches!(
            self,
            Self::StringEquals
                | Self::StringNotEquals
                | Self::StringEqualsIgnoreCase
                | Self::StringNotEqualsIgnoreCase
                | Self::StringLike
                | Self::StringNotLike
                | Self::ArnEquals
                | Self::ArnLike
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }
}

/// One key test inside a Condition block.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The operator.
    pub operator: Operator,
    /// ForAllValues / ForAnyValue / none.
    pub qualifier: Qualifier,
    /// `…IfExists`.
    pub if_exists: bool,
    /// The condition key, lower-cased (keys are case-insensitive).
    pub key: String,
    /// Policy values as strings (JSON booleans and numbers are written as text).
    pub values: Vec<String>,
}
