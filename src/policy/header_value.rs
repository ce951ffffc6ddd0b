//! Rendering a compiled response header value once, when the policy is compiled.

use http::HeaderValue;

/// A response header value that cannot be rendered. Validation admits only tokens, so this
/// names a bug rather than a user's mistake, but it is reported like one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValueError {
    pub field: &'static str,
    pub value: String,
}

/// `text` as the value of `field` (RFC 9110 5.5: visible ASCII, SP and HTAB).
pub fn header_value(field: &'static str, text: String) -> Result<HeaderValue, HeaderValueError> {
    HeaderValue::try_from(text.as_str()).map_err(|_| HeaderValueError { field, value: text })
}
