//! `Signature-Input` and `Signature` (RFC 9421 §4.1, §4.2), parsed strictly as RFC 8941/9651
//! Dictionaries with `sfv`.
//!
//! Strict means: a label, a parameter or a component identifier given twice is an error (RFC
//! 8941 would let the last one win, so a second parser could read another signature than the
//! one we checked); a member of the wrong shape is an error; and only the component parameters
//! this implementation can reproduce exactly (`req`, `bs`) are accepted, anything else
//! (`sf`, `key`, `tr`, `name`, `@query-param`) is refused rather than approximated.

use std::convert::Infallible;

use http::HeaderMap;
use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, InnerListVisitor, ItemVisitor, ParameterVisitor,
};
use sfv::{BareItem, BareItemFromInput, Dictionary, KeyRef, ListEntry, Parser};

/// Most signatures one message may carry; more is treated as hostile.
pub const MAX_SIGNATURES: usize = 8;
/// Most components one signature may cover.
pub const MAX_COMPONENTS: usize = 32;
/// Longest signature value accepted (an RSA-8192 signature is 1024 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// Why the signature fields could not be read. Carries no request data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{0}: not a valid structured field dictionary")]
    Syntax(&'static str),
    #[error("{0}: a label or parameter appears twice")]
    Duplicate(&'static str),
    #[error("{0}: {1}")]
    Shape(&'static str, &'static str),
    #[error("unsupported component or parameter: {0}")]
    Unsupported(&'static str),
}

/// One covered component (RFC 9421 §2): a derived component (`@method`) or a field name, with
/// the parameters we support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// `;req`: taken from the request a response answers (RFC 9421 §2.4).
    pub req: bool,
    /// `;bs`: each field line wrapped as a byte sequence (RFC 9421 §2.1.3).
    pub bs: bool,
}

impl Component {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            req: false,
            bs: false,
        }
    }

    pub fn req(name: &str) -> Self {
        Self {
            req: true,
            ..Self::new(name)
        }
    }

    pub fn is_derived(&self) -> bool {
        self.name.starts_with('@')
    }

    /// `@method`, `"@target-uri";req` written as `@target-uri;req`: the audit record form.
    pub fn audit_name(&self) -> String {
        let mut s = self.name.clone();
        if self.bs {
            s.push_str(";bs");
        }
        if self.req {
            s.push_str(";req");
        }
        s
    }

    /// The component identifier as it appears in the signature base (RFC 9421 §2.5):
    /// an sf-string, then its parameters in the order we emit them.
    pub fn identifier(&self) -> String {
        let mut s = String::with_capacity(self.name.len() + 8);
        s.push('"');
        s.push_str(&self.name);
        s.push('"');
        if self.bs {
            s.push_str(";bs");
        }
        if self.req {
            s.push_str(";req");
        }
        s
    }
}

/// The signature parameters of RFC 9421 §2.3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub created: Option<i64>,
    pub expires: Option<i64>,
    pub nonce: Option<String>,
    pub alg: Option<String>,
    pub keyid: Option<String>,
    pub tag: Option<String>,
}

/// One member of `Signature-Input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInput {
    pub label: String,
    pub components: Vec<Component>,
    pub params: Params,
    /// The `@signature-params` value (RFC 9421 §2.3): the inner list re-serialized.
    pub serialized: String,
}

/// The signature chosen for verification, with its value from `Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub input: SignatureInput,
    pub value: Vec<u8>,
}

/// The field lines of `name` combined as RFC 9110 §5.3 says (joined with ", "); `None` when
/// absent. A line that is not visible ASCII is an error: a structured field is ASCII.
pub fn combined(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, FieldError> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v
            .to_str()
            .map_err(|_| FieldError::Shape(name, "not ASCII"))?;
        match &mut out {
            None => out = Some(s.to_owned()),
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
        }
    }
    Ok(out)
}

/// Picks the signature tagged `tag` (FAPI 2.0 Message Signing: `fapi-2-request`). `Ok(None)`:
/// no signature carries that tag. Two signatures with the tag are refused (which one would
/// the API trust?), and so is a tagged input without its `Signature` member.
pub fn select(headers: &HeaderMap, tag: &str) -> Result<Option<Selected>, FieldError> {
    const INPUT: &str = "signature-input";
    let Some(inputs) = combined(headers, INPUT)? else {
        return Ok(None);
    };
    let inputs = parse_inputs(&inputs)?;
    let mut tagged = inputs
        .into_iter()
        .filter(|i| i.params.tag.as_deref() == Some(tag));
    let Some(input) = tagged.next() else {
        return Ok(None);
    };
    if tagged.next().is_some() {
        return Err(FieldError::Shape(
            INPUT,
            "two signatures carry the same tag",
        ));
    }
    let signatures =
        combined(headers, "signature")?.ok_or(FieldError::Shape("signature", "missing"))?;
    let value = parse_signatures(&signatures)?
        .into_iter()
        .find(|(l, _)| *l == input.label)
        .map(|(_, v)| v)
        .ok_or(FieldError::Shape("signature", "no value for the label"))?;
    Ok(Some(Selected { input, value }))
}

/// Parses a whole `Signature-Input` value.
pub fn parse_inputs(value: &str) -> Result<Vec<SignatureInput>, FieldError> {
    const F: &str = "signature-input";
    let dict = strict_dictionary(F, value)?;
    let mut out = Vec::with_capacity(dict.len());
    for (label, entry) in &dict {
        let ListEntry::InnerList(inner) = entry else {
            return Err(FieldError::Shape(F, "a member is not an inner list"));
        };
        if inner.items.len() > MAX_COMPONENTS {
            return Err(FieldError::Shape(F, "too many components"));
        }
        let mut components: Vec<Component> = Vec::with_capacity(inner.items.len());
        for item in &inner.items {
            let c = component(item)?;
            // RFC 9421 §2.5: a component identifier must not be covered twice.
            if components.contains(&c) {
                return Err(FieldError::Duplicate(F));
            }
            components.push(c);
        }
        let params = params(&inner.params)?;
        let mut ser = sfv::ListSerializer::new();
        ser.members(std::iter::once(entry));
        let serialized = ser
            .finish()
            .ok_or(FieldError::Shape(F, "cannot serialize"))?;
        out.push(SignatureInput {
            label: label.as_str().to_owned(),
            components,
            params,
            serialized,
        });
    }
    Ok(out)
}

/// Parses a whole `Signature` value: label → signature bytes.
pub fn parse_signatures(value: &str) -> Result<Vec<(String, Vec<u8>)>, FieldError> {
    const F: &str = "signature";
    let dict = strict_dictionary(F, value)?;
    dict.into_iter()
        .map(|(label, entry)| match entry {
            ListEntry::Item(sfv::Item {
                bare_item: BareItem::ByteSequence(b),
                params,
            }) if params.is_empty() && !b.is_empty() && b.len() <= MAX_SIGNATURE_BYTES => {
                Ok((label.as_str().to_owned(), b))
            }
            _ => Err(FieldError::Shape(F, "a member is not a byte sequence")),
        })
        .collect()
}

/// An RFC 8941 Dictionary with no key given twice, at any level, and at most
/// [`MAX_SIGNATURES`] members.
pub fn strict_dictionary(field: &'static str, value: &str) -> Result<Dictionary, FieldError> {
    let dict = Parser::new(value)
        .parse::<Dictionary>()
        .map_err(|_| FieldError::Syntax(field))?;
    // Same text, second pass: the owned Dictionary keeps only the last of repeated keys.
    Parser::new(value)
        .parse_dictionary_with_visitor(NoDuplicates::default())
        .map_err(|_| FieldError::Duplicate(field))?;
    if dict.len() > MAX_SIGNATURES {
        return Err(FieldError::Shape(field, "too many members"));
    }
    Ok(dict)
}

fn component(item: &sfv::Item) -> Result<Component, FieldError> {
    const F: &str = "signature-input";
    let BareItem::String(name) = &item.bare_item else {
        return Err(FieldError::Shape(F, "a component is not a string"));
    };
    let name = name.as_str();
    // RFC 9421 §2.1: field names are lower-cased; derived names are lower-case by definition.
    let valid = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~@".contains(&b)
        })
        && name.rfind('@').is_none_or(|i| i == 0);
    if !valid {
        return Err(FieldError::Shape(F, "not a lower-case component name"));
    }
    let mut c = Component::new(name);
    for (k, v) in &item.params {
        let flag = match v {
            BareItem::Boolean(true) => true,
            _ => return Err(FieldError::Shape(F, "a component flag is not ?1")),
        };
        match k.as_str() {
            "req" => c.req = flag,
            "bs" => c.bs = flag,
            "sf" => return Err(FieldError::Unsupported("sf")),
            "key" => return Err(FieldError::Unsupported("key")),
            "tr" => return Err(FieldError::Unsupported("tr")),
            "name" => return Err(FieldError::Unsupported("name")),
            _ => return Err(FieldError::Unsupported("unknown component parameter")),
        }
    }
    if c.bs && c.is_derived() {
        return Err(FieldError::Shape(F, "bs on a derived component"));
    }
    Ok(c)
}

fn params(p: &sfv::Parameters) -> Result<Params, FieldError> {
    const F: &str = "signature-input";
    let mut out = Params::default();
    let int = |v: &BareItem| {
        v.as_integer()
            .map(i64::from)
            .ok_or(FieldError::Shape(F, "created/expires is not an integer"))
    };
    let string = |v: &BareItem| {
        v.as_string()
            .map(|s| s.as_str().to_owned())
            .ok_or(FieldError::Shape(F, "a string parameter is not a string"))
    };
    for (k, v) in p {
        match k.as_str() {
            "created" => out.created = Some(int(v)?),
            "expires" => out.expires = Some(int(v)?),
            "nonce" => out.nonce = Some(string(v)?),
            "alg" => out.alg = Some(string(v)?),
            "keyid" => out.keyid = Some(string(v)?),
            "tag" => out.tag = Some(string(v)?),
            // RFC 9421 §6.3 registry: only these are defined; an unknown one cannot be
            // understood, so the signature is not accepted.
            _ => return Err(FieldError::Unsupported("unknown signature parameter")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- duplicate detection

/// A key seen twice in the same scope.
#[derive(Debug)]
struct Duplicate;

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("duplicate key")
    }
}

impl std::error::Error for Duplicate {}

/// Walks a Dictionary and fails on a key repeated in the dictionary or in any parameter list;
/// yields the number of members.
#[derive(Default)]
struct NoDuplicates<'de> {
    keys: Vec<&'de str>,
}

#[derive(Default)]
struct ParamKeys<'de> {
    keys: Vec<&'de str>,
}

struct Entry;
struct Inner;

fn first_time<'de>(keys: &mut Vec<&'de str>, key: &'de KeyRef) -> Result<(), Duplicate> {
    if keys.contains(&key.as_str()) {
        return Err(Duplicate);
    }
    keys.push(key.as_str());
    Ok(())
}

impl<'de> DictionaryVisitor<'de> for NoDuplicates<'de> {
    type Out = usize;
    type Error = Duplicate;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        first_time(&mut self.keys, key)?;
        Ok(Entry)
    }

    fn finish(self) -> Result<usize, Duplicate> {
        Ok(self.keys.len())
    }
}

impl<'de> EntryVisitor<'de> for Entry {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        Ok(ItemParams)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
        Ok(Inner)
    }
}

struct ItemParams;

impl<'de> ItemVisitor<'de> for ItemParams {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        _bare_item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = ()>, Self::Error> {
        Ok(ParamKeys::default())
    }
}

impl<'de> InnerListVisitor<'de> for Inner {
    type Error = Infallible;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        Ok(ItemParams)
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>, Self::Error> {
        Ok(ParamKeys::default())
    }
}

impl<'de> ParameterVisitor<'de> for ParamKeys<'de> {
    type Out = ();
    type Error = Duplicate;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        _value: BareItemFromInput<'de>,
    ) -> Result<(), Self::Error> {
        first_time(&mut self.keys, key)
    }

    fn finish(self) -> Result<(), Duplicate> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
