//! Wildcard matching: `*` (any run, possibly empty) and `?` (one character), and ARN
//! matching segment by segment, where a wildcard never spans a colon of the ARN's first
//! five separators.

/// Glob match, case-sensitive.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    glob_with(pattern, text, false)
}

/// Glob match ignoring ASCII case (action names).
pub(super) fn glob_ignore_case(pattern: &str, text: &str) -> bool {
    glob_with(pattern, text, true)
}

fn glob_with(pattern: &str, text: &str, ignore_case: bool) -> bool {
    // Policies and ARNs are nearly always ASCII: match bytes without allocating.
    if pattern.is_ascii() && text.is_ascii() {
        glob_units(
            pattern.as_bytes(),
            text.as_bytes(),
            |a, b| {
                if ignore_case {
                    a.eq_ignore_ascii_case(&b)
                } else {
                    a == b
                }
            },
            b'*',
            b'?',
        )
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        glob_units(
            &p,
            &t,
            |a: char, b: char| {
                if ignore_case {
                    a.eq_ignore_ascii_case(&b)
                } else {
                    a == b
                }
            },
            '*',
            '?',
        )
    }
}

/// Iterative glob with one backtrack point: linear in practice, never exponential.
fn glob_units<T: Copy + PartialEq>(
    p: &[T],
    t: &[T],
    eq: impl Fn(T, T) -> bool,
    star_u: T,
    any_u: T,
) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match (p.get(pi).copied(), t.get(ti).copied()) {
            (Some(c), _) if c == star_u => {
                star = Some((pi, ti));
                pi += 1;
            }
            (Some(c), Some(_)) if c == any_u => {
                pi += 1;
                ti += 1;
            }
            (Some(pc), Some(tc)) if eq(pc, tc) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == star_u))
}

/// Splits an ARN into its six parts (the resource part may itself contain colons).
fn arn_parts(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    Some([
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ])
}

/// ArnLike / Resource matching: each of the six parts matched on its own.
pub(super) fn arn_like(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match (arn_parts(pattern), arn_parts(arn)) {
        (Some(p), Some(a)) => p.iter().zip(a.iter()).all(|(p, a)| glob(p, a)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark() {
        assert!(glob("kms:*", "kms:Decrypt"));
        assert!(glob("role/svc-*", "role/svc-billing"));
        assert!(glob("role/svc-?", "role/svc-a"));
        assert!(!glob("role/svc-?", "role/svc-ab"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("Kms:*", "kms:Decrypt"));
        assert!(glob_ignore_case("KMS:decrypt", "kms:Decrypt"));
        assert!(glob_ignore_case("kms:ReEncrypt*", "kms:ReEncryptFrom"));
    }

    /// A backtracking matcher would try ~5000^50 splits here and never return; the
    /// linear one answers at once.
    #[test]
    fn pathological_patterns_finish() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob(&pattern, &text));
    }

    #[test]
    fn arn_wildcards_do_not_cross_colons() {
        let p = "arn:aws:someservice:*:111122223333:finance/*";
        assert!(arn_like(
            p,
            "arn:aws:someservice:us-east-2:111122223333:finance/doc.txt"
        ));
        assert!(!arn_like(
            p,
            "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
        ));
        assert!(arn_like(
            "arn:aws:kms:*:111122223333:key/*",
            "arn:aws:kms:us-east-1:111122223333:key/k"
        ));
        assert!(!arn_like(
            "arn:aws:kms:us-west-2:*:key/*",
            "arn:aws:kms:us-east-1:111122223333:key/k"
        ));
        assert!(arn_like("*", "anything"));
        assert!(!arn_like("arn:aws:kms", "arn:aws:kms"));
    }
}
