//! The tokenisation the reference scorers see: `pycocoevalcap`'s `PTBTokenizer`, which runs the
//! Stanford PTB tokenizer (CoreNLP 3.4.1, `-preserveLines -lowerCase`) and then drops the tokens in
//! [`PUNCTUATIONS`].
//!
//! [`ptb_tokenize`] is a small Rust rendering of that pipeline, not a port of the Java lexer. It:
//! - lowercases (Unicode, with Rust's `to_lowercase`, so `ΣΑΣ` → `σας` as in Java);
//! - splits on whitespace, and splits off brackets, double quotes, backquotes, `;`, `\`, `|`, `+`,
//!   `=`, commas not between digits, dash runs (`--`, `–`, `—`), leading `$`, `'`, `-` and `...`,
//!   and trailing `, ; : ... % - '` and runs of `!`/`?`;
//! - splits a final `.` off a word unless the word is an abbreviation: a single letter (`j.`), an
//!   acronym of letters and periods (`u.s.`, `a.m.`, `ph.d.`) or a common abbreviation (`mr.`,
//!   `dr.`, `st.`, `etc.`, `vs.`, month names, ...);
//! - splits the clitics `'s 'm 'd 're 've 'll n't` (`dog's` → `dog 's`, `can't` → `ca n't`) and
//!   `cannot gonna gotta wanna gimme lemme` (`can not`, `gon na`, ...);
//! - maps brackets to PTB's names **in lowercase** (`(` → `-lrb-`, `[` → `-lsb-`, `{` → `-lcb-`).
//!   `PUNCTUATIONS` lists the upper-case `-LRB-` and so never matches the lower-cased output: in
//!   `pycocoevalcap` the bracket tokens stay in the captions and count as words. We keep that;
//! - drops the tokens in [`PUNCTUATIONS`] (`. , ; : ! ? - -- ... ' '' ` `` `) and bare `"`. Tokens such as
//!   `!!`, `?!`, `&`, `$`, `%`, `#`, `'s` are kept, as in `pycocoevalcap`.
//!
//! Known differences from the Java tokenizer (rare in captions; none of them touches the caption
//! text that our models generate, which is lowercase words):
//! - PTB's abbreviation list is long; words it knows as abbreviations that are not in ours keep their
//!   period there (`calif.` → `calif.`) and lose it here (`calif`). Mid-word periods
//!   (`a...b` → PTB `a.` `b`) are left alone here;
//! - PTB's character normalisations are not done: `£` → `#`, `€` → `$`, `¢` → `cents`, `½` → `1/2`,
//!   and its British-to-American spellings when enabled;
//! - PTB's special words: `'tis` → `'t is`, `rock'n'roll` → `rock 'n' roll`, `ol'` stays whole;
//! - SGML/URL/e-mail detection: we keep words with `://` or starting `www.` whole, and any other
//!   run of non-space, non-split characters as one token, which matches PTB for
//!   `http://x.com/a?b=c`, `a@b.com`, `<tag>` and `a/b`, but not for every case.
//!
//! The test `ptb_fixture_agrees` checks this module against the real Java tokenizer's output on the
//! sentences in `tests/fixtures/metrics/tokenizer.json` (made by `generate.py` in that folder).

/// `pycocoevalcap`'s `PUNCTUATIONS`: tokens removed after PTB tokenisation.
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Words PTB keeps whole with their final period (a common subset of its list).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "gen", "sen", "rep", "rev",
    "gov", "capt", "col", "lt", "sgt", "mt", "ft", "ave", "inc", "co", "corp", "ltd", "bros",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "no",
    "fig",
];

/// Contractions PTB splits as whole words.
const SPLIT_WORDS: &[(&str, &str, &str)] = &[
    ("cannot", "can", "not"),
    ("gonna", "gon", "na"),
    ("gotta", "got", "ta"),
    ("wanna", "wan", "na"),
    ("gimme", "gim", "me"),
    ("lemme", "lem", "me"),
];

/// Suffixes after an apostrophe that PTB splits off as their own token.
const CLITICS: &[&str] = &["s", "m", "d", "re", "ve", "ll"];

/// Tokenises a caption as `pycocoevalcap` does before scoring: PTB tokens, lowercased, punctuation removed.
///
/// ```
/// use capsearch::eval::tokenize::ptb_tokenize;
/// assert_eq!(ptb_tokenize("A dog's ball (red), \"big\"!"), ["a", "dog", "'s", "ball", "-lrb-", "red", "-rrb-", "big"]);
/// ```
pub fn ptb_tokenize(caption: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in prepare(caption).split_whitespace() {
        for token in split_chunk(chunk) {
            let token = match token.as_str() {
                "(" => "-lrb-".to_string(),
                ")" => "-rrb-".to_string(),
                "[" => "-lsb-".to_string(),
                "]" => "-rsb-".to_string(),
                "{" => "-lcb-".to_string(),
                "}" => "-rcb-".to_string(),
                _ => token,
            };
            if token == "\"" || PUNCTUATIONS.contains(&token.as_str()) {
                continue;
            }
            out.push(token);
        }
    }
    out
}

/// Lowercases, normalises quotes and dashes, and puts spaces around characters that are always
/// tokens of their own.
fn prepare(caption: &str) -> String {
    let lower = caption.to_lowercase();
    let mut s = String::with_capacity(lower.len() + 16);
    for chunk in lower.split_whitespace() {
        if chunk.contains("://") || chunk.starts_with("www.") {
            // URLs stay whole, as PTB keeps them.
            s.push_str(chunk);
        } else {
            prepare_chunk(chunk, &mut s);
        }
        s.push(' ');
    }
    s
}

fn prepare_chunk(chunk: &str, s: &mut String) {
    let chars: Vec<char> = chunk.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\u{2019}' | '\u{2032}' => s.push('\''),
            '\u{2018}' => s.push_str(" ` "),
            '"' | '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{00ab}' | '\u{00bb}' => {
                s.push_str(" \" ")
            }
            '\u{2013}' | '\u{2014}' | '\u{2015}' => s.push_str(" -- "),
            '\u{2026}' => s.push_str(" ... "),
            '(' | ')' | '[' | ']' | '{' | '}' | '`' | ';' | '\\' | '|' | '+' | '=' => {
                s.push(' ');
                s.push(c);
                s.push(' ');
            }
            ',' => {
                let digit_before = i > 0 && chars[i - 1].is_ascii_digit();
                let digit_after = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
                if digit_before && digit_after {
                    s.push(',');
                } else {
                    s.push_str(" , ");
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while chars.get(i + 1) == Some(&'-') {
                    i += 1;
                }
                s.push_str(" -- ");
            }
            _ => s.push(c),
        }
        i += 1;
    }
}

/// Whether `rest` (what follows a leading apostrophe) is a clitic, ignoring trailing punctuation.
fn is_clitic_rest(rest: &str) -> bool {
    let core = rest.trim_end_matches([',', ';', ':', '!', '?', '.']);
    CLITICS.contains(&core)
}

/// Whether a word ending in `.` keeps its period (PTB treats it as an abbreviation).
fn is_abbreviation(word: &str) -> bool {
    let Some(stem) = word.strip_suffix('.') else {
        return false;
    };
    let mut chars = stem.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && c.is_alphabetic()
    {
        return true;
    }
    if stem.contains('.')
        && !stem.starts_with('.')
        && !stem.contains("..")
        && stem.chars().all(|c| c.is_alphabetic() || c == '.')
    {
        return true;
    }
    ABBREVIATIONS.contains(&stem)
}

/// Splits one whitespace-free chunk into PTB tokens (before punctuation removal).
fn split_chunk(chunk: &str) -> Vec<String> {
    let mut front: Vec<String> = Vec::new();
    let mut back: Vec<String> = Vec::new();
    let mut s = chunk;
    loop {
        if s.len() > 1 && s.starts_with('\'') && !is_clitic_rest(&s[1..]) {
            front.push("'".into());
            s = &s[1..];
        } else if s.len() > 1 && s.starts_with('$') {
            front.push("$".into());
            s = &s[1..];
        } else if s.len() > 3 && s.starts_with("...") {
            front.push("...".into());
            s = &s[3..];
        } else if s.len() > 1
            && s.starts_with('-')
            && s[1..].starts_with(|c: char| !c.is_ascii_digit() && c != '.')
        {
            front.push("-".into());
            s = &s[1..];
        } else {
            break;
        }
    }
    loop {
        if s.len() <= 1 {
            break;
        }
        let trimmed_qe = s.trim_end_matches(['!', '?']);
        if trimmed_qe.len() < s.len() {
            if trimmed_qe.is_empty() {
                break;
            }
            back.push(s[trimmed_qe.len()..].to_string());
            s = trimmed_qe;
            continue;
        }
        if s.len() > 3 && s.ends_with("...") {
            back.push("...".into());
            s = &s[..s.len() - 3];
            continue;
        }
        let last = s.chars().next_back().unwrap_or(' ');
        match last {
            ':' | '%' | '\'' | '-' => {
                back.push(last.to_string());
                s = &s[..s.len() - 1];
            }
            '.' if !is_abbreviation(s) => {
                back.push(".".into());
                s = &s[..s.len() - 1];
            }
            _ => break,
        }
    }
    let mut tokens = front;
    tokens.extend(split_clitics(s));
    tokens.extend(back.into_iter().rev());
    tokens
}

/// Splits contractions off a word: `dog's` → `dog 's`, `don't` → `do n't`, `cannot` → `can not`.
fn split_clitics(word: &str) -> Vec<String> {
    if word.is_empty() {
        return Vec::new();
    }
    if let Some((_, a, b)) = SPLIT_WORDS.iter().find(|(w, _, _)| *w == word) {
        return vec![a.to_string(), b.to_string()];
    }
    if word.len() > 3
        && let Some(stem) = word.strip_suffix("n't")
    {
        return vec![stem.to_string(), "n't".to_string()];
    }
    if let Some(pos) = word.rfind('\'') {
        let (stem, suffix) = (&word[..pos], &word[pos + 1..]);
        if !stem.is_empty() && CLITICS.contains(&suffix) {
            return vec![stem.to_string(), word[pos..].to_string()];
        }
    }
    vec![word.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Vec<String> {
        ptb_tokenize(s)
    }

    #[test]
    fn typical_captions() {
        assert_eq!(
            tok("A man in a red shirt climbs a rock."),
            ["a", "man", "in", "a", "red", "shirt", "climbs", "a", "rock"]
        );
        assert_eq!(
            tok("Two dogs , one black and one white , play ."),
            ["two", "dogs", "one", "black", "and", "one", "white", "play"]
        );
        assert_eq!(tok("It's 5:00 a.m.!"), ["it", "'s", "5:00", "a.m."]);
        assert_eq!(
            tok("don't can't won't"),
            ["do", "n't", "ca", "n't", "wo", "n't"]
        );
        assert_eq!(tok("a dog 's ball"), ["a", "dog", "'s", "ball"]);
        assert_eq!(tok("the dogs' toys"), ["the", "dogs", "toys"]);
        assert_eq!(tok("wow!! really?!"), ["wow", "!!", "really", "?!"]);
        assert_eq!(
            tok("x-ray -hi- 3-year-old --- – —"),
            ["x-ray", "hi", "3-year-old"]
        );
        assert_eq!(
            tok("$5 50% 1,000 1,5 a,b"),
            ["$", "5", "50", "%", "1,000", "1,5", "a", "b"]
        );
        assert_eq!(
            tok("Mr. Smith, Dr. Who etc."),
            ["mr.", "smith", "dr.", "who", "etc."]
        );
        assert_eq!(tok(""), Vec::<String>::new());
        assert_eq!(tok(" ... . , "), Vec::<String>::new());
        assert_eq!(
            tok("“Quoted” ‘single’ it’s"),
            ["quoted", "single", "it", "'s"]
        );
    }

    #[test]
    fn brackets_stay_as_lowercase_ptb_names() {
        assert_eq!(
            tok("(a) [b] {c}"),
            [
                "-lrb-", "a", "-rrb-", "-lsb-", "b", "-rsb-", "-lcb-", "c", "-rcb-"
            ]
        );
    }

    #[test]
    fn unicode_lowercase() {
        assert_eq!(tok("Café ΣΑΣ 日本語"), ["café", "σας", "日本語"]);
    }
}
