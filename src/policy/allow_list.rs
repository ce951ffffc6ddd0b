//! `Access-Control-Allow-Methods` and `-Headers`, compiled per rule and rendered per answer
//! (CORS-CHECKLIST 2.6-2.11): the rule's whole list, so one browser cache entry serves every
//! method and header the rule allows (DESIGN 4.3).

use http::HeaderValue;

use super::header_value::{HeaderValueError, header_value};
use crate::rules::TokenList;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// Nothing to list: the header is left out.
    Omit,
    /// The rule's list, rendered once.
    Value(HeaderValue),
    /// A `*` list with credentials: `*` is literal to browsers then (CORS-CHECKLIST 2.11),
    /// so what was requested is echoed. Also a list with prefix globs, which no header value
    /// can say: the requested names the globs cover are echoed.
    Echo,
}

impl AllowList {
    pub(super) fn compile(
        list: &TokenList,
        credentials: bool,
        field: &'static str,
    ) -> Result<Self, HeaderValueError> {
        if (list.any && credentials) || !list.prefixes.is_empty() {
            return Ok(AllowList::Echo);
        }
        let written = list.written();
        if written.is_empty() {
            return Ok(AllowList::Omit);
        }
        Ok(AllowList::Value(header_value(field, written.join(", "))?))
    }
}
