//! "Did you mean": the nearest known name to a misspelled one, when it is reasonably close.

/// Longest name worth a suggestion (bytes).
const MAX_NAME: usize = 64;

/// The candidate nearest to `name`, or None when none is close enough to be a likely typo.
///
/// Nearness is the optimal-string-alignment distance (a transposition such as
/// `andriod` -> `android` costs 1), compared case-insensitively; ties go to the higher
/// Jaro-Winkler similarity. "Close enough" is at most a third of the name's length
/// (at least 1, at most 4) edits, or a Jaro-Winkler similarity of at least 0.9 when the
/// name is long (which catches a dropped prefix or suffix).
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // No known name is this long, and edit distances are quadratic: a producer's 1 MB
    // string must not cost a billion steps.
    if name.len() > MAX_NAME {
        return None;
    }
    let lower = name.to_lowercase();
    let len = lower.chars().count();
    let budget = (len / 3).clamp(1, 4);
    let mut best: Option<(&'a str, usize, f64)> = None;
    for candidate in candidates {
        if candidate.is_empty() {
            continue;
        }
        let cand_lower = candidate.to_lowercase();
        let distance = strsim::osa_distance(&lower, &cand_lower);
        let similarity = strsim::jaro_winkler(&lower, &cand_lower);
        let close = distance <= budget || (len >= 8 && similarity >= 0.9);
        if !close {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, d, s)) => distance < d || (distance == d && similarity > s),
        };
        if better {
            best = Some((candidate, distance, similarity));
        }
    }
    best.map(|(c, _, _)| c)
}

/// The end of a sentence about a misspelled `name`: `; did you mean "x"?` or `.`.
pub(crate) fn sentence_end<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    match nearest(name, candidates) {
        Some(c) => format!("; did you mean \"{c}\"?"),
        None => ".".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn finds_transpositions_and_case() {
        let names = ["android_header", "android_content", "ios_title"];
        assert_eq!(nearest("andriod_header", names), Some("android_header"));
        assert_eq!(nearest("IOS_TITLE", names), Some("ios_title"));
        assert_eq!(nearest("zzz", names), None);
        assert_eq!(nearest("", names), None);
    }
}
