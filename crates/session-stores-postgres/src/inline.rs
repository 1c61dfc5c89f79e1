//! Statements for PgBouncer's transaction pooling: values written into the
//! SQL text as literals, sent with the simple query protocol.
//!
//! Why not bound parameters: sqlx prepares every statement that has
//! parameters. Its named statements (`sqlx_s_N`, the default) live on one
//! server connection, which PgBouncer 1.18 hands to other clients between
//! transactions (errors such as "prepared statement \"sqlx_s_1\" already
//! exists"), and `PgConnectOptions::statement_cache_capacity(0)` does not
//! help: sqlx still sends named statements, it only stops reusing them. Its
//! unnamed ones (`.persistent(false)`) take two round trips, `Parse` and
//! `Bind`/`Execute`, each ending in a `Sync`; PgBouncer may give the second
//! to another server connection, whose unnamed statement is another
//! client's, so the query runs someone else's statement with our values.
//! A simple query is one message, one round trip, and leaves nothing behind
//! on the server connection.
//!
//! Why this is safe: every value becomes a literal whose quoted part holds
//! only hex digits or an integer (`[0-9a-f-]`): bytes as
//! `decode('<hex>', 'hex')`, text as the hex of its UTF-8 bytes converted
//! back on the server, integers as `'<digits>'::int8`. No quote, backslash or
//! other character of a value ever reaches the SQL text, whatever the
//! value (and whatever `standard_conforming_strings` says), so there is
//! nothing to escape and nothing to inject. The rest of each statement is
//! this crate's constant text and validated, quoted identifiers.

use std::fmt::Write as _;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// One value to write into a statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// SQL `NULL`.
    Null,
    /// A `BYTEA`.
    Bytes(&'a [u8]),
    /// A `TEXT` (the session data, expiry JSON).
    Text(&'a str),
    /// A `BIGINT`.
    Int(i64),
}

impl<'a> Value<'a> {
    /// `NULL` for `None`.
    pub(crate) fn text(value: Option<&'a str>) -> Self {
        value.map_or(Self::Null, Self::Text)
    }

    /// `NULL` for `None`.
    pub(crate) fn bytes(value: Option<&'a [u8]>) -> Self {
        value.map_or(Self::Null, Self::Bytes)
    }

    /// `NULL` for `None`.
    pub(crate) fn int(value: Option<i64>) -> Self {
        value.map_or(Self::Null, Self::Int)
    }

    /// How long the literal is, near enough to size the buffer once.
    fn estimated_len(&self) -> usize {
        match self {
            Self::Null => 4,
            Self::Bytes(bytes) => 2 * bytes.len() + 20,
            Self::Text(text) => 2 * text.len() + 40,
            Self::Int(_) => 28,
        }
    }

    fn write_to(&self, out: &mut String) {
        match self {
            Self::Null => out.push_str("NULL"),
            Self::Bytes(bytes) => {
                out.push_str("decode('");
                push_hex(out, bytes);
                out.push_str("', 'hex')");
            }
            Self::Text(text) => {
                // The server converts the UTF-8 bytes back to text (and
                // refuses them, as it would a bound value, if its encoding
                // cannot hold them).
                out.push_str("convert_from(decode('");
                push_hex(out, text.as_bytes());
                out.push_str("', 'hex'), 'UTF8')");
            }
            Self::Int(n) => {
                // Quoted and cast, so the most negative value is one literal
                // rather than a minus applied to a number too big for BIGINT.
                // Writing to a String cannot fail.
                let _ = write!(out, "'{n}'::int8");
            }
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * bytes.len());
    for &byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// A piece of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Sql(String),
    /// `$n`: the `n`-th value (1-based).
    Value(usize),
}

/// A statement with `$1` .. `$N` placeholders, split once so that filling it
/// in is one pass. `N` is the number of values it takes.
#[derive(Debug, Clone)]
pub(crate) struct Template<const N: usize> {
    parts: Vec<Part>,
    len: usize,
}

impl<const N: usize> Template<N> {
    /// `sql` is this crate's constant text and quoted identifiers, with no
    /// `$` but in placeholders (identifiers are checked to hold only
    /// `[A-Za-z0-9_]`). A `$n` beyond `N` is left in the text, where the
    /// server refuses it as a syntax error; the unit tests build every
    /// statement, so none is.
    pub(crate) fn new(sql: &str) -> Self {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let number = after[..digits].parse::<usize>().ok().filter(|n| (1..=N).contains(n));
            debug_assert!(
                number.is_some(),
                "placeholder ${} out of 1..={N} in {sql}",
                &after[..digits]
            );
            match number {
                Some(n) => {
                    parts.push(Part::Sql(std::mem::take(&mut text)));
                    parts.push(Part::Value(n - 1));
                }
                None => {
                    text.push('$');
                    text.push_str(&after[..digits]);
                }
            }
            rest = &after[digits..];
        }
        text.push_str(rest);
        parts.push(Part::Sql(text));
        parts.retain(|part| !matches!(part, Part::Sql(text) if text.is_empty()));
        let len =
            parts.iter().map(|part| if let Part::Sql(text) = part { text.len() } else { 0 }).sum();
        Self { parts, len }
    }

    /// The statement with `values` written in.
    pub(crate) fn fill(&self, values: [Value<'_>; N]) -> SqlStr {
        let len = self.len
            + self
                .parts
                .iter()
                .map(|part| match part {
                    Part::Value(index) => values[*index].estimated_len(),
                    Part::Sql(_) => 0,
                })
                .sum::<usize>();
        let mut out = String::with_capacity(len);
        for part in &self.parts {
            match part {
                Part::Sql(text) => out.push_str(text),
                Part::Value(index) => values[*index].write_to(&mut out),
            }
        }
        // Safe by construction: see the module documentation.
        AssertSqlSafe(out).into_sql_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: Value<'_>) -> String {
        Template::<1>::new("SELECT $1").fill([value]).as_str().to_owned()
    }

    /// What a value's literal holds between its quotes.
    fn quoted_parts(sql: &str) -> Vec<&str> {
        sql.split('\'').skip(1).step_by(2).collect()
    }

    #[test]
    fn values_become_hex_or_integer_literals() {
        assert_eq!(one(Value::Null), "SELECT NULL");
        assert_eq!(one(Value::Bytes(&[0, 0xff, 0x27])), "SELECT decode('00ff27', 'hex')");
        assert_eq!(one(Value::Bytes(&[])), "SELECT decode('', 'hex')");
        assert_eq!(one(Value::Text("é'")), "SELECT convert_from(decode('c3a927', 'hex'), 'UTF8')");
        assert_eq!(one(Value::Int(i64::MIN)), "SELECT '-9223372036854775808'::int8");
        assert_eq!(one(Value::Int(7)), "SELECT '7'::int8");
        assert_eq!(one(Value::text(None)), "SELECT NULL");
        assert_eq!(one(Value::bytes(Some(b"a"))), "SELECT decode('61', 'hex')");
        assert_eq!(one(Value::int(Some(-1))), "SELECT '-1'::int8");
    }

    #[test]
    fn no_character_of_a_value_reaches_the_sql() {
        let hostile = [
            "'; DROP TABLE sessions; --",
            "\\' OR 1=1 --",
            "$1 $$ $tag$",
            "\0\r\n\u{2028}",
            "E'\\x27'",
            "\"quoted\"",
        ];
        for text in hostile {
            for sql in [one(Value::Text(text)), one(Value::Bytes(text.as_bytes()))] {
                for quoted in quoted_parts(&sql) {
                    assert!(
                        quoted.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                            || quoted == "hex"
                            || quoted == "UTF8",
                        "{quoted:?} in {sql:?}"
                    );
                }
                assert!(!sql.contains('\\') && !sql.contains(';') && !sql.contains('"'), "{sql}");
            }
        }
    }

    #[test]
    fn placeholders_are_replaced_in_order_and_by_number() {
        let template = Template::<10>::new("a $10 b $1 c $2$3 d");
        let values = [
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Int(10),
        ];
        assert_eq!(
            template.fill(values).as_str(),
            "a '10'::int8 b '1'::int8 c '2'::int8'3'::int8 d"
        );
        assert_eq!(Template::<0>::new("SELECT 1").fill([]).as_str(), "SELECT 1");
    }
}
