//! The shape of every AWS enumeration p11kms speaks: a Rust enum with AWS's exact
//! spellings, parsed and printed case-sensitively as AWS does.

/// Declares an enum of AWS values with `as_str` and `parse`.
macro_rules! aws_enum {
    ($(#[$doc:meta])* $vis:vis $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            // Not every enum's list has a user outside the tests.
            #[allow(dead_code)]
            $vis const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The AWS spelling.
            $vis fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
            /// Parses the AWS spelling (exact, case-sensitive as AWS is).
            $vis fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
