//! [`Name`]: a metric or label name borrowed from the body, unescaped only on demand.

use std::borrow::Cow;
use std::fmt;

/// A metric or label name as read from a line: a slice of the body plus whether that slice still holds
/// escapes (a quoted Prometheus 3 name such as `"a\"b"`, given without its quotes).
///
/// Design: it is `Copy` and has no drop glue, so the legacy-name path (every name borrowed, nothing to
/// unescape) costs what a `&str` did; only the rare escaped name pays, and only when it is read
/// ([`Name::to_cow`] allocates). Equality, hashing-free comparison with `str`, `Display` and `Debug` all
/// see the unescaped name.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> Name<'a> {
    /// A name that needs no unescaping (a legacy name, or a quoted one without backslashes).
    #[inline(always)]
    pub const fn plain(name: &'a str) -> Self {
        Self {
            raw: name,
            escaped: false,
        }
    }

    /// `raw` as written between the quotes; `escaped` when it holds a backslash (label-value escapes).
    #[inline(always)]
    pub(super) const fn new(raw: &'a str, escaped: bool) -> Self {
        Self { raw, escaped }
    }

    /// The name, when it can be borrowed as is (always, unless it held an escape).
    #[inline(always)]
    pub fn as_str(self) -> Option<&'a str> {
        (!self.escaped).then_some(self.raw)
    }

    /// The name, unescaped: borrowed unless it held an escape.
    #[inline(always)]
    pub fn to_cow(self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(self.unescaped())
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// The name as written (escapes kept, quotes removed).
    #[inline(always)]
    pub fn raw(self) -> &'a str {
        self.raw
    }

    /// Whether [`Name::raw`] still holds escapes.
    #[inline(always)]
    pub fn is_escaped(self) -> bool {
        self.escaped
    }

    #[cold]
    #[inline(never)]
    fn unescaped(self) -> String {
        super::scan::unescape_label(self.raw)
    }
}

impl<'a> From<&'a str> for Name<'a> {
    fn from(name: &'a str) -> Self {
        Self::plain(name)
    }
}

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Self) -> bool {
        if !self.escaped && !other.escaped {
            return self.raw == other.raw;
        }
        self.to_cow() == other.to_cow()
    }
}

impl Eq for Name<'_> {}

impl PartialEq<str> for Name<'_> {
    fn eq(&self, other: &str) -> bool {
        match self.as_str() {
            Some(name) => name == other,
            None => self.to_cow() == other,
        }
    }
}

impl PartialEq<&str> for Name<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Name<'_> {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<Name<'_>> for &str {
    fn eq(&self, other: &Name<'_>) -> bool {
        *other == **self
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_cow(), f)
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_cow(), f)
    }
}
