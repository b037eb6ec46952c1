//! Splitting a request's command string into words.
//!
//! The master splits [`Request::command`](crate::Request::command) like a
//! POSIX shell would, as gunicorn does with Python's `shlex.split`. The rules
//! are those of the `shlex` crate's `split` (gunicornd splits
//! `GUNICORN_CMD_ARGS` with it), written out here so that the protocol needs
//! nothing beyond serde; a test in gunicornd checks that the two agree.
//!
//! - Words are separated by spaces, tabs and newlines.
//! - `'...'` keeps everything up to the next `'` as it is.
//! - `"..."` runs to the next unescaped `"`. Inside it a backslash escapes
//!   `$`, `` ` ``, `"` and `\`, removes itself and a following newline, and
//!   is kept before any other character.
//! - Elsewhere a backslash makes the next character literal (a backslash
//!   before a newline removes both).
//! - A `#` where a word would start begins a comment, up to the end of the
//!   line.

use std::str::Chars;

/// The words of `text`, or `None` when a quote is not closed or the text
/// ends with a backslash.
pub fn split_words(text: &str) -> Option<Vec<String>> {
    let mut chars = text.chars();
    let mut words = Vec::new();
    while let Some(first) = next_word_start(&mut chars) {
        words.push(rest_of_word(first, &mut chars)?);
    }
    Some(words)
}

/// Skips separators and comments; the first character of the next word.
fn next_word_start(chars: &mut Chars<'_>) -> Option<char> {
    loop {
        match chars.next()? {
            ' ' | '\t' | '\n' => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            c => return Some(c),
        }
    }
}

/// The word that starts with `c`, up to the separator that ends it.
fn rest_of_word(mut c: char, chars: &mut Chars<'_>) -> Option<String> {
    let mut word = String::new();
    loop {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => word.push(c),
                }
            },
            '"' => double_quoted(chars, &mut word)?,
            '\\' => match chars.next()? {
                '\n' => {}
                c => word.push(c),
            },
            ' ' | '\t' | '\n' => return Some(word),
            c => word.push(c),
        }
        match chars.next() {
            Some(next) => c = next,
            None => return Some(word),
        }
    }
}

/// The inside of `"..."`, after the opening quote, onto `word`.
fn double_quoted(chars: &mut Chars<'_>, word: &mut String) -> Option<()> {
    loop {
        match chars.next()? {
            '"' => return Some(()),
            '\\' => match chars.next()? {
                c @ ('$' | '`' | '"' | '\\') => word.push(c),
                '\n' => {}
                c => {
                    word.push('\\');
                    word.push(c);
                }
            },
            c => word.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a successful split returns.
    fn words(words: &[&str]) -> Option<Vec<String>> {
        Some(words.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn separators() {
        assert_eq!(split_words(""), words(&[]));
        assert_eq!(split_words(" \t\n "), words(&[]));
        assert_eq!(
            split_words("  worker\tadd\n2 "),
            words(&["worker", "add", "2"])
        );
    }

    #[test]
    fn quotes() {
        assert_eq!(split_words(r#"'show' "stats""#), words(&["show", "stats"]));
        assert_eq!(split_words("a'b c'd"), words(&["ab cd"]));
        assert_eq!(split_words(r#"'a\"b'"#), words(&[r#"a\"b"#]));
        assert_eq!(split_words("'' \"\""), words(&["", ""]));
        assert_eq!(split_words("\"a 'b' c\""), words(&["a 'b' c"]));
    }

    #[test]
    fn backslashes() {
        assert_eq!(split_words(r"a\ b c"), words(&["a b", "c"]));
        assert_eq!(split_words(r"\'x"), words(&["'x"]));
        assert_eq!(split_words("a\\\nb"), words(&["ab"]));
        assert_eq!(
            split_words(r#""\$ \` \" \\ \n""#),
            words(&[r#"$ ` " \ \n"#])
        );
        assert_eq!(split_words("\"a\\\nb\""), words(&["ab"]));
    }

    #[test]
    fn comments_start_only_where_a_word_would() {
        assert_eq!(split_words("show # all\nstats"), words(&["show", "stats"]));
        assert_eq!(split_words("a#b"), words(&["a#b"]));
        assert_eq!(split_words("# nothing"), words(&[]));
    }

    #[test]
    fn non_ascii_passes_through() {
        assert_eq!(split_words("é 'ü ß' \"€\""), words(&["é", "ü ß", "€"]));
    }

    #[test]
    fn unbalanced_input_is_refused() {
        for text in ["show 'workers", "\"a", "a\\", "\"a\\", "ok 'x"] {
            assert_eq!(split_words(text), None, "{text:?}");
        }
    }
}
