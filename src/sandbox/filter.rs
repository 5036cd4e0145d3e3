//! A shallow check of createTargetedMessage's `devices_filter`: not empty, balanced
//! parentheses, closed string literals. Enough to answer Pushwoosh's compile errors.

/// `Err` carries the message of the `errors` entry (type `syntax`).
pub(super) fn check(filter: &str) -> Result<(), &'static str> {
    if filter.trim().is_empty() {
        return Err("Invalid tag set specification. Filter is empty.");
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in filter.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' if depth == 0 => return Err("Invalid tag set specification. Unexpected \")\"."),
            ')' => depth -= 1,
            _ => {}
        }
    }
    if in_string {
        Err("Invalid tag set specification. Unterminated string.")
    } else if depth > 0 {
        Err("Invalid tag set specification. \")\" expected.")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_documented_filters() {
        for f in [
            r#"A("XXXXX-XXXXX") * T("City", EQ, "Name")"#,
            r#"A("12345-12345") \ A("67890-67890")"#,
            r#"(A("A-1") + A("B-2")) * T("Age", IN, [17,20])"#,
            r#"T("odd(", EQ, "x\"y)")"#,
            r#"AT("7777D-322A7","Last Application Open", GTE, "90 days ago")"#,
        ] {
            assert_eq!(check(f), Ok(()), "{f}");
        }
    }

    #[test]
    fn rejects_broken_filters() {
        assert_eq!(
            check(r#"A("X" * T("City", EQ, "Name")"#),
            Err("Invalid tag set specification. \")\" expected.")
        );
        assert!(check(r#"A("X"))"#).is_err());
        assert!(check(r#"A("X)"#).is_err());
        assert!(check("  ").is_err());
        assert!(check("").is_err());
    }
}
