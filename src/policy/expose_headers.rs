//! `Access-Control-Expose-Headers` for filled actual responses (DESIGN 5; CORS-CHECKLIST
//! 5.3). Never on a preflight answer: browsers ignore it there (4.3).

use http::HeaderValue;
use http::header::{ACCESS_CONTROL_EXPOSE_HEADERS, HeaderMap};

use super::header_value::{HeaderValueError, header_value};
use crate::rules::TokenList;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExposeHeaders(Option<HeaderValue>);

impl ExposeHeaders {
    pub(super) fn compile(list: &TokenList) -> Result<Self, HeaderValueError> {
        let written = list.written();
        if written.is_empty() {
            return Ok(ExposeHeaders(None));
        }
        Ok(ExposeHeaders(Some(header_value(
            "Access-Control-Expose-Headers",
            written.join(", "),
        )?)))
    }

    #[inline]
    pub fn insert(&self, out: &mut HeaderMap) {
        if let Some(value) = &self.0 {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, value.clone());
        }
    }
}
