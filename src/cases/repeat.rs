//! `REPEAT(text,N)`: `text` written N times, so a cases file can state a long hostile input
//! (a 1 MiB `Access-Control-Request-Headers`, a 1 KiB origin) exactly without holding it.
//! The count is what follows the last comma, so `text` may hold commas (`REPEAT(x-a,,700)` is
//! `x-a,` 700 times); it cannot hold `)`. No origin, method or header name holds `REPEAT(`
//! (parentheses are not token characters, RFC 9110 5.6.2, nor host characters), so the
//! expansion never changes a real value.

/// The most bytes one request value may expand to.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// The most bytes all `REPEAT` expansions of one cases file may produce together.
pub const MAX_EXPANDED_BYTES: usize = 64 << 20;

const OPEN: &str = "REPEAT(";

/// Expands every `REPEAT(text,N)` of `value`. `budget` is what the file may still expand to
/// (see [`MAX_EXPANDED_BYTES`]); it is charged before anything is allocated.
pub fn expand(value: &str, budget: &mut usize) -> Result<String, String> {
    if !value.contains(OPEN) {
        return Ok(value.to_owned());
    }
    // Sizes first: a count of a billion is refused before a byte is written.
    let mut pieces = Vec::new();
    let mut total = 0usize;
    let mut rest = value;
    while let Some(start) = rest.find(OPEN) {
        pieces.push((&rest[..start], 1));
        let after = &rest[start + OPEN.len()..];
        let close = after
            .find(')')
            .ok_or_else(|| "REPEAT( without its closing \")\"".to_owned())?;
        let (text, count) = after[..close]
            .rsplit_once(',')
            .ok_or_else(|| "write REPEAT(text,N): no comma before the count".to_owned())?;
        let count: usize = count.parse().map_err(|_| {
            format!("write REPEAT(text,N): the count {count:?} is not a whole number")
        })?;
        pieces.push((text, count));
        rest = &after[close + 1..];
    }
    pieces.push((rest, 1));
    for (text, count) in &pieces {
        total = text
            .len()
            .checked_mul(*count)
            .and_then(|n| n.checked_add(total))
            .filter(|&n| n <= MAX_VALUE_BYTES)
            .ok_or_else(|| {
                format!("the value expands to more than {MAX_VALUE_BYTES} bytes (REPEAT limit)")
            })?;
    }
    if total > *budget {
        return Err(format!(
            "the file's REPEAT values expand to more than {MAX_EXPANDED_BYTES} bytes in all"
        ));
    }
    *budget -= total;
    let mut out = String::with_capacity(total);
    // An empty text adds nothing however large its count (`REPEAT(,18446744073709551615)`
    // passes the size check at 0 bytes): never loop over the count for it.
    for (text, count) in pieces.into_iter().filter(|(text, _)| !text.is_empty()) {
        for _ in 0..count {
            out.push_str(text);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_all(value: &str) -> Result<String, String> {
        let mut budget = MAX_EXPANDED_BYTES;
        expand(value, &mut budget)
    }

    #[test]
    fn an_empty_text_repeated_a_huge_count_is_empty_at_once() {
        assert_eq!(
            expand_all("a,REPEAT(,18446744073709551615),b"),
            Ok("a,,b".into())
        );
    }

    #[test]
    fn expands_and_keeps_commas_in_the_text() {
        assert_eq!(expand_all("a-REPEAT(x,,3)-b").as_deref(), Ok("a-x,x,x,-b"));
        assert_eq!(
            expand_all("REPEAT(ab,2)REPEAT(c,1)").as_deref(),
            Ok("ababc")
        );
        assert_eq!(expand_all("plain").as_deref(), Ok("plain"));
        assert_eq!(expand_all("REPEAT(a,0)").as_deref(), Ok(""));
    }

    #[test]
    fn refuses_what_it_cannot_read_with_the_reason() {
        assert_eq!(
            expand_all("REPEAT(a,3"),
            Err("REPEAT( without its closing \")\"".into())
        );
        assert_eq!(
            expand_all("REPEAT(a)"),
            Err("write REPEAT(text,N): no comma before the count".into())
        );
        assert_eq!(
            expand_all("REPEAT(a,-1)"),
            Err("write REPEAT(text,N): the count \"-1\" is not a whole number".into())
        );
    }

    #[test]
    fn bounds_one_value_and_the_file_before_allocating() {
        let limit = format!("REPEAT(ab,{})", MAX_VALUE_BYTES / 2);
        assert_eq!(expand_all(&limit).map(|s| s.len()), Ok(MAX_VALUE_BYTES));
        let over = format!("xREPEAT(ab,{})", MAX_VALUE_BYTES / 2);
        assert_eq!(
            expand_all(&over),
            Err(format!(
                "the value expands to more than {MAX_VALUE_BYTES} bytes (REPEAT limit)"
            ))
        );
        // A count that overflows the multiplication is refused, not wrapped.
        assert!(expand_all(&format!("REPEAT(ab,{})", usize::MAX)).is_err());
        let mut budget = MAX_VALUE_BYTES + 10;
        assert!(expand(&limit, &mut budget).is_ok());
        assert_eq!(budget, 10);
        assert_eq!(
            expand("REPEAT(a,11)", &mut budget),
            Err(format!(
                "the file's REPEAT values expand to more than {MAX_EXPANDED_BYTES} bytes in all"
            ))
        );
        assert_eq!(budget, 10, "a refused expansion charges nothing");
    }
}
