//! The fields of an audit record that the report reads, deserialized with strings borrowed
//! from the line wherever they have no escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The fields of a record the report reads; everything else is skipped.
#[derive(Deserialize)]
pub(super) struct Line<'a> {
    #[serde(borrow)]
    pub(super) ts: Str<'a>,
    #[serde(borrow)]
    pub(super) kind: Str<'a>,
    #[serde(default, borrow)]
    pub(super) interaction_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) api: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) route: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) decision: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) reason: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) client_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) subject: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) token: Option<TokenLine<'a>>,
    #[serde(default, borrow)]
    pub(super) consent: Option<ConsentLine<'a>>,
    #[serde(default, borrow)]
    pub(super) delegation: Option<Vec<ActorLine<'a>>>,
    #[serde(default, borrow)]
    pub(super) scopes: Option<Vec<Str<'a>>>,
    #[serde(default, borrow)]
    pub(super) policy_revision: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(super) struct TokenLine<'a> {
    #[serde(default, borrow)]
    pub(super) jti: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(super) sha256: Option<Str<'a>>,
    #[serde(default)]
    pub(super) exp: Option<i64>,
    #[serde(default)]
    pub(super) iat: Option<i64>,
    #[serde(default, borrow)]
    pub(super) binding: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(super) struct ConsentLine<'a> {
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    #[serde(default, borrow)]
    pub(super) permissions: Option<Vec<Str<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ActorLine<'a> {
    #[serde(borrow)]
    pub(super) sub: Str<'a>,
}

/// A JSON string borrowed from the line when it has no escapes (serde's `Cow<str>` inside an
/// `Option` or `Vec` always copies).
pub(super) struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

pub(super) fn as_str<'a>(s: &'a Option<Str<'_>>) -> Option<&'a str> {
    s.as_ref().map(|s| &**s)
}
