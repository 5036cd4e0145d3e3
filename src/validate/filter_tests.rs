//! devices_filter compiler tests: precedence, associativity, every seed example, error kinds and positions.

use crate::validate::filter::{Expr, FilterError, Operand, Operator, Platform, Scalar, compile};

/// The canonical, fully parenthesized form of a filter that must compile.
fn canon(src: &str) -> String {
    match compile(src) {
        Ok(expr) => expr.to_string(),
        Err(errors) => panic!("{src:?} should compile, got {errors:#?}"),
    }
}

fn errors(src: &str) -> Vec<FilterError> {
    match compile(src) {
        Ok(expr) => panic!("{src:?} should fail, compiled to {expr}"),
        Err(errors) => errors,
    }
}

/// The single error of `src`.
fn error(src: &str) -> FilterError {
    let mut all = errors(src);
    assert_eq!(all.len(), 1, "{src:?}: {all:#?}");
    all.remove(0)
}

#[test]
fn subtraction_binds_tighter_than_union() {
    assert_eq!(
        canon(r#"A("a") + A("b") \ A("c")"#),
        r#"(A("a") + (A("b") \ A("c")))"#
    );
    assert_eq!(
        canon(r#"A("a") \ A("b") * A("c")"#),
        r#"((A("a") \ A("b")) * A("c"))"#
    );
}

#[test]
fn operators_are_left_associative() {
    assert_eq!(
        canon(r#"A("a") \ A("b") \ A("c")"#),
        r#"((A("a") \ A("b")) \ A("c"))"#
    );
    assert_eq!(
        canon(r#"A("a") + A("b") * A("c")"#),
        r#"((A("a") + A("b")) * A("c"))"#
    );
    assert_eq!(
        canon(r#"A("a") * A("b") + A("c")"#),
        r#"((A("a") * A("b")) + A("c"))"#
    );
}

#[test]
fn parentheses_group() {
    assert_eq!(
        canon(r#"(A("a") + A("b")) \ A("c")"#),
        r#"((A("a") + A("b")) \ A("c"))"#
    );
    assert_eq!(
        canon(r#"A("a") * (A("b") + A("c"))"#),
        r#"(A("a") * (A("b") + A("c")))"#
    );
    assert_eq!(canon(r#"((((A("a")))))"#), r#"A("a")"#);
}

#[test]
fn the_ast_has_the_documented_shape() {
    let expr = compile(r#"A("X", ["iOS"]) \ AT("X", "t", IN, [1, "b"])"#);
    let expected = Expr::Subtract(
        Box::new(Expr::App {
            code: "X".into(),
            platforms: Some(vec![Platform::Ios]),
        }),
        Box::new(Expr::AppTag {
            app: "X".into(),
            name: "t".into(),
            op: Operator::In,
            operand: Operand::List(vec![Scalar::Int(1), Scalar::Str("b".into())]),
        }),
    );
    assert_eq!(expr, Ok(expected));
}

#[test]
fn canonical_form_compiles_to_the_same_tree() {
    let src = r#"A("a\"q") + T("x", NOTSET) \ (AT("b", "y", BETWEEN, [-5, 5]) * T("z", EQ, "w"))"#;
    let first = compile(src);
    let again = first.as_ref().map(|e| compile(&e.to_string()));
    assert_eq!(again, Ok(first.clone()), "{first:?}");
}

/// Every filter of the seed's createTargetedMessage section, with the `\"` of the page
/// (markdown escaping) read as plain quotes.
#[test]
fn seed_filter_examples_compile() {
    let examples = [
        r#"A("XXXXX-XXXXX") * T("City", EQ, "Name")"#,
        r#"A("XXXXX-XXXXX", ["iOS", "Android", "OsX", "Windows", "Amazon", "Safari", "Chrome", "Firefox"])"#,
        r#"T("Age", IN, [17,20])"#,
        r#"T ("Age", EQ, 30)"#,
        r#"T ("favorite_color", IN, ["red","green","blue"])"#,
        r#"T ("Name", NOTSET, "")"#,
        r#"T ("Level", EQ, 14)"#,
        r#"T ("Level", BETWEEN, [1,5])"#,
        r#"T ("Level", GTE, 29)"#,
        r#"T("Category", IN, ["breaking_news","business","politics"])"#,
        r#"AT("7777D-322A7","Last Application Open", BETWEEN, ["2022-02-28", "2022-03-02"])"#,
        r#"AT("7777D-322A7","Last Application Open", GTE, "90 days ago")"#,
        r#"A("12345-12345") \ A("67890-67890")"#,
        r#"A("67890-67890") \ A("12345-12345")"#,
    ];
    for src in examples {
        canon(src);
    }
}

/// The seed's `T ("Level", BETWEEN, [1,5)` is a typo: it must fail, pointing at the ")".
#[test]
fn seed_typo_between_fails_with_a_syntax_error() {
    let e = error(r#"T ("Level", BETWEEN, [1,5)"#);
    assert_eq!(e.kind, "syntax");
    assert_eq!(e.message, "Invalid tag set specification. \"]\" expected.");
    assert_eq!(e.position, 25);
}

#[test]
fn missing_close_paren_is_pushwoosh_message() {
    let e = error(r#"T("City", EQ, "Name""#);
    assert_eq!(e.message, "Invalid tag set specification. \")\" expected.");
    assert_eq!((e.kind, e.position), ("syntax", 20));
}

#[test]
fn syntax_error_positions() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "Set expected"),
        ("   ", 3, "Set expected"),
        (r#"A("a") +"#, 8, "Set expected"),
        (
            r#"A("a") A("b")"#,
            7,
            "Operator \"+\", \"*\" or \"\\\" expected",
        ),
        (
            r#"A("a""#,
            5,
            "Invalid application set specification. \")\" expected.",
        ),
        (r#"A(1)"#, 2, "Application code (string) expected"),
        (r#"A("a", "iOS")"#, 7, "Platform list \"[\" expected"),
        (
            r#"T("a" EQ, 1)"#,
            6,
            "Invalid tag set specification. \",\" expected.",
        ),
        (r#"T("a", "EQ", 1)"#, 7, "Operator expected"),
        (r#"T("a", EQ, )"#, 11, "Value (string or integer) expected"),
        (
            r#"AT("a", EQ, 1)"#,
            8,
            "Invalid application tag set specification. Tag name (string) expected.",
        ),
        (
            r#"AT("a" "t", EQ, 1)"#,
            7,
            "Invalid application tag set specification. \",\" expected.",
        ),
        (
            r#"(A("a")"#,
            7,
            "Invalid filter specification. \")\" expected.",
        ),
        (r#"A("a") )"#, 7, "expected, got \")\""),
        (r#"t("a", EQ, 1)"#, 0, "got \"t\""),
        (r#"A("unterminated)"#, 2, "Unterminated string"),
        (r#"A("a") & A("b")"#, 7, "Unexpected character \"&\""),
        (r#"A("é") ü"#, 7, "Unexpected character \"ü\""),
        (r#"T("a", EQ, 99999999999999999999)"#, 11, "out of range"),
        (r#"A("a\q")"#, 4, "Invalid escape"),
    ];
    for (src, position, fragment) in cases {
        let e = error(src);
        assert_eq!(e.kind, "syntax", "{src:?}: {e:?}");
        assert_eq!(e.position, *position, "{src:?}: {e:?}");
        assert!(e.message.contains(fragment), "{src:?}: {e:?}");
    }
}

#[test]
fn semantic_errors() {
    let cases: &[(&str, usize, &str)] = &[
        (r#"T("a", EQUALS, 1)"#, 7, "Unknown operator \"EQUALS\""),
        (r#"T("a", eq, 1)"#, 7, "did you mean \"EQ\"?"),
        (r#"A("a", ["ios"])"#, 8, "did you mean \"iOS\"?"),
        (r#"A("a", ["Linux"])"#, 8, "Unknown platform \"Linux\""),
        (r#"A("a", [])"#, 7, "Platform list must not be empty"),
        (r#"T("a", BETWEEN, [1])"#, 16, "exactly 2 items"),
        (r#"T("a", BETWEEN, [1, 2, 3])"#, 16, "exactly 2 items"),
        (r#"T("a", BETWEEN, 1)"#, 16, "exactly 2 items"),
        (r#"T("a", BETWEEN, [9, 1])"#, 16, "min <= max"),
        (r#"T("a", IN, 1)"#, 11, "Operator IN needs an array operand"),
        (
            r#"T("a", NOTIN, "x")"#,
            14,
            "Operator NOTIN needs an array operand",
        ),
        (r#"T("a", IN, [])"#, 11, "non-empty array"),
        (r#"T("a", EQ, [1])"#, 11, "single value"),
        (r#"T("a", GTE, "abc")"#, 12, "integer or a date"),
        (r#"T("a", EQ)"#, 9, "needs an operand"),
        (r#"T("", EQ, 1)"#, 2, "Tag name must not be empty"),
        (r#"A(" ")"#, 2, "Application code must not be empty"),
    ];
    for (src, position, fragment) in cases {
        let e = error(src);
        assert_eq!(e.kind, "semantic", "{src:?}: {e:?}");
        assert_eq!(e.position, *position, "{src:?}: {e:?}");
        assert!(e.message.contains(fragment), "{src:?}: {e:?}");
    }
}

#[test]
fn several_errors_are_reported() {
    let all = errors(r#"T("a", IN, 1) + A("b", ["Web", "Linux"]) * T("c", FOO, 1) + ("#);
    let kinds: Vec<&str> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        ["semantic", "semantic", "semantic", "semantic", "syntax"],
        "{all:#?}"
    );
}

#[test]
fn whitespace_anywhere() {
    assert_eq!(
        canon("\n\tT ( \"a\" ,\r\n EQ , -3 )\n+\u{3000}A(\"b\")  "),
        r#"(T("a", EQ, -3) + A("b"))"#
    );
}

#[test]
fn nesting_is_bounded() {
    let ok = format!("{}A(\"a\"){}", "(".repeat(64), ")".repeat(64));
    assert_eq!(canon(&ok), r#"A("a")"#);
    let deep = format!("{}A(\"a\"){}", "(".repeat(65), ")".repeat(65));
    let e = error(&deep);
    assert_eq!((e.kind, e.position), ("syntax", 64));
    assert!(e.message.contains("nested deeper than 64"));
    // Far deeper than any stack would take, unbalanced: still one clean error.
    let e = error(&"(".repeat(100_000));
    assert_eq!(e.kind, "syntax");
}

#[test]
fn operation_count_is_bounded() {
    let ok = vec![r#"A("a")"#; 1001].join(" + ");
    assert!(compile(&ok).is_ok());
    let too_many = vec![r#"A("a")"#; 1002].join(" \\ ");
    let e = error(&too_many);
    assert!(e.message.contains("Too many set operations"), "{e:?}");
}

#[test]
fn display_of_error() {
    let e = error(r#"T("a", EQ, 1"#);
    assert_eq!(
        e.to_string(),
        "Invalid tag set specification. \")\" expected. (syntax error at position 12)"
    );
}
