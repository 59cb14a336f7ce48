//! Key names in any spelling: normalized for matching, shown in the API's and the seed's
//! spelling, and the closest known key for a typo.

/// The spelling-blind form of a key or enum value: lower case, without `_` and `-`.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// camelCase to snake_case, to show users of the seed's spelling the key they would write.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase();
            // The last capital of an acronym starts a new word: ECSManaged -> ecs_managed.
            let acronym_end = chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || acronym_end {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// "`taskDefinition` (or `task_definition`)".
pub fn spellings(name: &str) -> String {
    let snake = snake_case(name);
    if snake == name {
        format!("`{name}`")
    } else {
        format!("`{name}` (or `{snake}`)")
    }
}

/// The message for an unknown key, and the known key it most likely meant.
pub(super) fn unknown_key_message<'a>(
    key: &str,
    known: impl Iterator<Item = &'a String>,
) -> (String, Option<String>) {
    let known: Vec<&String> = known.collect();
    let wanted = normalize(key);
    let best = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&wanted, &normalize(k)), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    let allowed = known
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some((_, k)) => (
            format!(
                "unknown key `{key}`; did you mean {}? Allowed here: {allowed}",
                spellings(k)
            ),
            Some(k.clone()),
        ),
        None => (
            format!("unknown key `{key}`; allowed here: {allowed}"),
            None,
        ),
    }
}
